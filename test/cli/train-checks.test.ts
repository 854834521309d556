import { strict as assert } from 'assert';
import { spawn, spawnSync, SpawnOptions } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { HOST_TAG } from '../../src/io/writers';

// `tunelab train`: bad inputs refused before step 1 with a message naming them, Ctrl-C saving a resumable
// checkpoint, and a failed final save naming where the weights went. The CLI runs in one node process
// (`node -r tsx/cjs`), so a signal sent to it reaches the trainer directly.
const root = path.join(__dirname, '..', '..');
const cliArgs = (args: string[]) => ['--require', 'tsx/cjs', path.join(root, 'src', 'cli.ts'), ...args];

function cli(args: string[], options: SpawnOptions = {}) {
  const r = spawnSync(process.execPath, cliArgs(args), { encoding: 'utf8', cwd: root, timeout: 120_000, ...options });
  return { code: r.status, stdout: String(r.stdout), stderr: String(r.stderr) };
}

/** Starts the CLI; `when(stderrSoFar)` is called on each stderr chunk, until it returns true. */
function cliAsync(args: string[], when: (stderr: string, pid: number) => boolean) {
  const child = spawn(process.execPath, cliArgs(args), { cwd: root });
  let stdout = '';
  let stderr = '';
  let fired = false;
  child.stdout.on('data', (d) => { stdout += d; });
  child.stderr.on('data', (d) => {
    stderr += d;
    if (!fired) fired = when(stderr, child.pid!);
  });
  const timer = setTimeout(() => child.kill('SIGKILL'), 120_000);
  return new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve) => {
    child.on('close', (code) => { clearTimeout(timer); resolve({ code, stdout, stderr }); });
  });
}

const noStack = (s: string) => assert.ok(!/^\s+at /m.test(s), `stack trace printed:\n${s}`);

describe('cli train: checks before training, interrupts, resumes', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tunelab-cli-checks-'));
  fs.chmodSync(dir, 0o755); // readable by the unprivileged user of the permission test
  const lines = Array.from({ length: 300 }, (_, i) => `The ${['cat', 'dog', 'bird'][i % 3]} sat on the ${['mat', 'log', 'branch'][i % 3]} number ${i % 10}.`);
  const text = path.join(dir, 'corpus.txt');
  fs.writeFileSync(text, lines.join('\n'));
  const tiny = ['--layers', '1', '--d-model', '32', '--heads', '2', '--context', '16', '--vocab-size', '300', '--batch-size', '8', '--lr', '3e-3', '--warmup', '4'];

  it('refuses an --out that is a file or lies under one, before training', () => {
    const file = path.join(dir, 'a-file');
    fs.writeFileSync(file, 'x');
    for (const [out, msg] of [[file, /--out .*a-file: is a file, not a folder/], [path.join(file, 'run'), /--out .*a-file\/run: .*a-file is a file, so no folder can be made under it/]] as const) {
      const r = cli(['train', '--data', text, '--out', out, '--steps', '2', ...tiny]);
      assert.equal(r.code, 1, r.stderr);
      assert.match(r.stderr, msg);
      assert.doesNotMatch(r.stderr, /loss/, 'no step ran');
      noStack(r.stderr);
    }
    assert.equal(fs.readFileSync(file, 'utf8'), 'x', 'the file is left alone');
  });

  it('refuses an --out folder the user cannot write in (as root: run as nobody, since root passes permission bits)', function () {
    const ro = path.join(dir, 'read-only');
    fs.mkdirSync(ro, { mode: 0o555 });
    fs.chmodSync(ro, 0o555);
    const asRoot = process.getuid?.() === 0;
    if (!asRoot && process.platform === 'win32') this.skip();
    const r = cli(['train', '--data', text, '--out', path.join(ro, 'run'), '--steps', '2', ...tiny], asRoot ? { uid: 65534, gid: 65534 } : {});
    assert.equal(r.code, 1, r.stderr);
    assert.match(r.stderr, /--out .*read-only\/run: cannot write in .*read-only \(EACCES: permission denied\)/);
    noStack(r.stderr);
  });

  it('refuses --context beyond the --from model\'s context length, naming both', () => {
    const base = path.join(root, 'models', 'tiny-llama');
    const ctx = JSON.parse(fs.readFileSync(path.join(base, 'config.json'), 'utf8')).max_position_embeddings as number;
    const r = cli(['train', '--from', base, '--data', text, '--out', path.join(dir, 'ctx'), '--steps', '1', '--context', String(ctx * 4)]);
    assert.equal(r.code, 1, r.stderr);
    assert.match(r.stderr, new RegExp(`--context ${ctx * 4} is longer than the model's context length ${ctx} \\(.*tiny-llama/config\\.json\\); use --context ${ctx} or less`));
    assert.ok(!fs.existsSync(path.join(dir, 'ctx')));
  });

  it('trains on the text column of a .jsonl (not on its JSON syntax) and refuses chat rows, naming what to use', () => {
    const jsonl = path.join(dir, 'docs.jsonl');
    fs.writeFileSync(jsonl, Array.from({ length: 30 }, (_, i) => JSON.stringify({ text: lines.slice(i * 10, i * 10 + 10).join(' '), source: 'x' })).join('\n') + '\n');
    const r = cli(['train', '--data', jsonl, '--out', path.join(dir, 'jsonl'), '--steps', '2', ...tiny, '--json']);
    assert.equal(r.code, 0, r.stderr);
    const tok = JSON.parse(fs.readFileSync(path.join(dir, 'jsonl', 'final', 'tokenizer.json'), 'utf8'));
    const vocab = Object.keys(tok.model.vocab).join(' ');
    assert.doesNotMatch(vocab, /"text|\{"/, 'JSON syntax is not in the tokenizer\'s merges');
    assert.match(vocab, /cat|dog|bird/);
    const chat = path.join(dir, 'chat.jsonl');
    fs.writeFileSync(chat, JSON.stringify({ messages: [{ role: 'user', content: 'Hi' }, { role: 'assistant', content: 'Hello' }] }) + '\n');
    const c = cli(['train', '--data', chat, '--out', path.join(dir, 'chat'), '--steps', '2', ...tiny]);
    assert.equal(c.code, 1);
    assert.match(c.stderr, /chat\.jsonl: messages rows \(columns messages\); `tunelab train` and `eval` read plain text: a "text" column or a \.txt\/\.md file\. For these rows use the library's sft\(\)/);
    const bad = path.join(dir, 'bad.jsonl');
    fs.writeFileSync(bad, '{"text": "fine"}\n{"text": 3}\n');
    const b = cli(['train', '--data', bad, '--out', path.join(dir, 'bad'), '--steps', '2', ...tiny]);
    assert.equal(b.code, 1);
    assert.match(b.stderr, /bad\.jsonl: row 2, column "text"/);
    noStack(b.stderr + c.stderr);
  });

  it('Ctrl-C saves checkpoint-<step> and prints the resume command; resuming gives the uninterrupted run\'s weights and losses', async () => {
    // Long enough that a SIGINT sent at step 25 lands mid-run on a fast machine (60 steps once ended first).
    const run = (out: string) => ['train', '--data', text, '--out', out, '--steps', '400', ...tiny, '--eval-every', '0', '--json'];
    const whole = cli(run(path.join(dir, 'whole')));
    assert.equal(whole.code, 0, whole.stderr);
    const w = JSON.parse(whole.stdout);
    // Interrupt once the first progress line (step 25) is out.
    const out = path.join(dir, 'cut');
    const cut = await cliAsync(run(out), (err, pid) => {
      if (!/25\/400 loss/.test(err)) return false;
      process.kill(pid, 'SIGINT');
      return true;
    });
    assert.equal(cut.code, 130, cut.stderr);
    const m = /interrupted after step (\d+) of 400; checkpoint saved: (\S+)\nresume with: (.*)\n/.exec(cut.stderr);
    assert.ok(m, cut.stderr);
    const step = Number(m[1]);
    assert.ok(step >= 25 && step < 400, `stopped at ${step}`);
    assert.equal(m[2], path.join(out, `checkpoint-${step}`));
    assert.ok(fs.existsSync(path.join(m[2], 'optimizer.safetensors')));
    assert.ok(!fs.existsSync(path.join(out, 'final')), 'no final model for an interrupted run');
    // The printed command, run as printed (its program part is `npx tsx src/cli.ts`; same script here).
    const printed = m[3].split(' ');
    assert.deepEqual(printed.slice(0, 4), ['npx', 'tsx', 'src/cli.ts', 'train']);
    assert.ok(!m[3].includes("'"), 'no quoting needed for these paths');
    assert.deepEqual(printed.slice(-2), ['--resume', m[2]]);
    // Resumed as printed but with the text summary, which must report the resumed part and the whole run.
    const resumed = cli(printed.slice(3).filter((a) => a !== '--json'));
    assert.equal(resumed.code, 0, resumed.stderr);
    assert.match(resumed.stderr, new RegExp(`resuming at step ${step} from`));
    assert.match(resumed.stdout, new RegExp(`^trained steps ${step + 1}–400 in \\S+ this run, 400 steps in \\S+ in all `));
    assert.match(resumed.stdout, new RegExp(`\nloss ${w.firstLoss.toFixed(3)} → ${w.finalLoss.toFixed(3)}; held-out loss ${w.evalLoss.toFixed(3)}`),
      'the history of the first part travels in the checkpoint');
    assert.ok(fs.readFileSync(path.join(out, 'final', 'model.safetensors')).equals(fs.readFileSync(path.join(dir, 'whole', 'final', 'model.safetensors'))),
      'same final weights, byte for byte, as the uninterrupted run');
  });

  it('--resume of a checkpoint a crash left moved aside puts it back first and takes its tokenizer (not one trained anew)', () => {
    const out = path.join(dir, 'crashed-resume');
    const first = cli(['train', '--data', text, '--out', out, '--steps', '4', '--checkpoint-every', '2', ...tiny, '--eval-every', '0']);
    assert.equal(first.code, 0, first.stderr);
    // As if the writer died between the two renames of its last save: only the complete `new` temp is left.
    const deadPid = spawnSync(process.execPath, ['-e', '']).pid;
    const ckpt = path.join(out, 'checkpoint-4');
    fs.renameSync(ckpt, path.join(out, `.checkpoint-4.new-${HOST_TAG}-${deadPid}-000000000000`));
    // Another --vocab-size: a tokenizer trained anew would not fit the checkpoint's weights.
    const resumed = cli(['train', '--data', text, '--out', out, '--steps', '6', ...tiny, '--vocab-size', '400', '--eval-every', '0', '--resume', ckpt]);
    assert.equal(resumed.code, 0, resumed.stderr);
    assert.match(resumed.stderr, /checkpoint-4: installed the complete new save/);
    assert.match(resumed.stderr, /vocab 300, .*resuming at step 4 from/);
    noStack(resumed.stderr);
  });

  it('when a save fails (the final model, or a checkpoint mid-run), the error names where the weights were kept', async () => {
    for (const [name, extra, failed, step] of [['final', [], /saving .*vanishing-final\/final failed: /, 400], ['checkpoint', ['--checkpoint-every', '200'], /vanishing-checkpoint.*checkpoint-200/, 200]] as const) {
      const out = path.join(dir, `vanishing-${name}`);
      const r = await cliAsync(['train', '--data', text, '--out', out, '--steps', '400', ...tiny, '--eval-every', '0', ...extra], (err) => {
        if (!/25\/400 loss/.test(err)) return false;
        fs.rmSync(out, { recursive: true, force: true });
        fs.writeFileSync(out, 'in the way'); // the run folder becomes a file mid-run
        return true;
      });
      assert.equal(r.code, 1, r.stderr);
      assert.match(r.stderr, failed);
      const m = new RegExp(`; the weights after step ${step} are kept in (\\S+) \\(a checkpoint`).exec(r.stderr);
      assert.ok(m, r.stderr);
      assert.ok(fs.existsSync(path.join(m[1], 'model.safetensors')) && fs.existsSync(path.join(m[1], 'optimizer.safetensors')), m[1]);
      const state = JSON.parse(fs.readFileSync(path.join(m[1], 'trainer_state.json'), 'utf8'));
      assert.equal(state.global_step ?? state.step, step, `${name}: a checkpoint of the last step done`);
      fs.rmSync(m[1], { recursive: true, force: true });
      noStack(r.stderr);
    }
  });
});
