import { strict as assert } from 'assert';
import { spawnSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';

const root = path.join(__dirname, '..', '..');
const script = path.join(root, 'models', 'pretrain.ts');
const run = (args: string[]) => spawnSync(process.execPath, ['--require', require.resolve('tsx/cjs'), script, ...args],
  { cwd: root, encoding: 'utf8', timeout: 300_000 });

describe('models/pretrain.ts (npm run pretrain-base)', function () {
  this.timeout(600_000);
  let dir: string;
  before(() => { dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tunelab-pretrain-')); });
  after(() => fs.rmSync(dir, { recursive: true, force: true }));

  it('refuses to replace an existing folder without --force, naming it, and leaves it as it was', () => {
    const out = path.join(dir, 'taken');
    fs.mkdirSync(out);
    fs.writeFileSync(path.join(out, 'mine.txt'), 'keep');
    const r = run(['--out', out, '--steps', '2']);
    assert.equal(r.status, 1);
    assert.ok(r.stderr.includes(`${out} exists; pass --force`), r.stderr);
    assert.deepEqual(fs.readdirSync(out), ['mine.txt']);
  });

  it('refuses a flag that is not a positive integer, and --steps with --minutes, naming them, before any work', () => {
    const bad = run(['--out', path.join(dir, 'never'), '--steps', '2O']);
    assert.equal(bad.status, 2);
    assert.equal(bad.stderr, 'pretrain.ts: --steps must be a positive integer (got "2O")\n');
    const both = run(['--out', path.join(dir, 'never'), '--steps', '2', '--minutes', '1']);
    assert.equal(both.status, 1);
    assert.match(both.stderr, /--steps and --minutes: give one/);
    assert.ok(!fs.existsSync(path.join(dir, 'never')));
  });

  it('the same seed and steps give the same weights, and the card names the command that reproduces them', () => {
    const shape = ['--name', 'repro', '--steps', '6', '--seq-len', '64', '--d-model', '32', '--layers', '1', '--heads', '2', '--kv-heads', '1', '--d-ff', '64'];
    const a = run([...shape, '--out', path.join(dir, 'a')]);
    assert.equal(a.status, 0, a.stderr);
    const b = run([...shape, '--out', path.join(dir, 'b')]);
    assert.equal(b.status, 0, b.stderr);
    const weights = (d: string) => fs.readFileSync(path.join(dir, d, 'model.safetensors'));
    assert.ok(weights('a').equals(weights('b')), 'two runs from the same seed differ');
    const card = JSON.parse(fs.readFileSync(path.join(dir, 'a', 'training.json'), 'utf8'));
    assert.equal(card.command, 'npm run pretrain-base -- --name repro --steps 6 --seq-len 64 --batch 16 --vocab 2048 --d-model 32 --layers 1 --heads 2 --kv-heads 1 --d-ff 64');
    assert.equal(card.samples.length, 10);
    assert.equal(card.steps, 6);
    assert.equal(card.tokensSeen, 6 * 16 * 64);
  });
});
