import { strict as assert } from 'assert';
import { spawnSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';

const root = path.join(__dirname, '..', '..');
const tsx = path.join(root, 'node_modules', '.bin', 'tsx');

function cli(...args: string[]) {
  const r = spawnSync(tsx, [path.join(root, 'src', 'cli.ts'), ...args], { encoding: 'utf8', cwd: root, timeout: 300_000 });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

const noStack = (s: string) => assert.ok(!/^\s+at /m.test(s), `stack trace printed:\n${s}`);

describe('cli', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tunelab-cli-'));
  const text = path.join(dir, 'corpus.txt');
  fs.writeFileSync(text, Array.from({ length: 300 }, (_, i) => `The ${['cat', 'dog', 'bird'][i % 3]} sat on the ${['mat', 'log', 'branch'][i % 3]} number ${i % 10}.`).join('\n'));
  const out = path.join(dir, 'run');

  it('info reports the backend as JSON', () => {
    const r = cli('info', '--json');
    assert.equal(r.code, 0, r.stderr);
    const info = JSON.parse(r.stdout);
    assert.equal(info.backend, 'wasm');
    assert.ok(info.patchedKernels.includes('BatchMatMul'));
  });

  it('train → generate → eval on a small text', () => {
    const t = cli('train', '--data', text, '--out', out, '--steps', '40', '--layers', '1', '--d-model', '32', '--heads', '2',
      '--context', '16', '--vocab-size', '300', '--batch-size', '8', '--lr', '3e-3', '--warmup', '4', '--eval-every', '20', '--json');
    assert.equal(t.code, 0, t.stderr);
    const s = JSON.parse(t.stdout);
    assert.equal(s.steps, 40);
    assert.ok(s.finalLoss < s.firstLoss - 1, `loss ${s.firstLoss} → ${s.finalLoss}`);
    assert.ok(Number.isFinite(s.evalPerplexity));
    assert.match(t.stderr, /40\/40 loss/);
    const model = path.join(out, 'final');
    assert.deepEqual(fs.readdirSync(model).sort(), ['config.json', 'model.safetensors', 'tokenizer.json', 'tokenizer_config.json']);
    const g = cli('generate', model, '--prompt', 'The cat', '--max-new-tokens', '8', '--json');
    assert.equal(g.code, 0, g.stderr);
    const gen = JSON.parse(g.stdout);
    assert.ok(gen.tokens >= 1 && gen.tokens <= 8);
    const plain = cli('generate', model, '--prompt', 'The cat', '--max-new-tokens', '8', '--no-cache', '--json');
    assert.equal(JSON.parse(plain.stdout).completion, gen.completion, 'cache and no-cache agree');
    const cont = cli('train', '--from', model, '--data', text, '--out', path.join(dir, 'run2'), '--steps', '5', '--context', '16', '--batch-size', '8', '--lr', '1e-3', '--warmup', '0', '--json');
    assert.equal(cont.code, 0, cont.stderr);
    const c = JSON.parse(cont.stdout);
    assert.ok(c.firstLoss < s.firstLoss - 1, `continued training starts from the trained weights (${c.firstLoss} vs ${s.firstLoss})`);
    assert.match(cont.stderr, /from .*final/);
    const e = cli('eval', model, '--data', text, '--json');
    assert.equal(e.code, 0, e.stderr);
    const ev = JSON.parse(e.stdout);
    assert.ok(Math.abs(ev.perplexity - Math.exp(ev.loss)) < 1e-9 * ev.perplexity);
    assert.ok(ev.loss < s.firstLoss);
  });

  it('wrong arguments print usage and exit 2; runtime errors one line and exit 1; never a stack trace', () => {
    for (const args of [['train'], ['train', '--data', text, '--steps', 'x'], ['frobnicate'], ['generate'], ['train', '--data', text, '--family', 'bert']]) {
      const r = cli(...args);
      assert.equal(r.code, 2, `${args.join(' ')}: ${r.stderr}`);
      assert.match(r.stderr, /error:/);
      assert.match(r.stderr, /Usage: tunelab/);
      noStack(r.stderr);
    }
    const missing = cli('eval', path.join(dir, 'nope'), '--data', text);
    assert.equal(missing.code, 1);
    assert.match(missing.stderr, /^tunelab: error: .*nope.*config\.json: cannot read/);
    noStack(missing.stderr);
    const badData = cli('train', '--data', path.join(dir, 'absent.txt'));
    assert.equal(badData.code, 1);
    assert.match(badData.stderr, /absent\.txt: no such file or folder/);
  });
});
