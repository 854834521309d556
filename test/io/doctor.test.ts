import { strict as assert } from 'node:assert';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Command } from 'commander';
import { CausalLM, modelConfig } from '../../src/model';
import { saveModel } from '../../src/io/checkpoint';
import { doctor } from '../../src/io/doctor';
import { registerDoctorCommand } from '../../src/io/doctor-cli';
import { CRASH_ENV, SimulatedCrash } from '../../src/io/folder';
import { HOST_TAG } from '../../src/io/writers';
import { engineReady } from '../helpers';

const cfg = modelConfig({ vocabSize: 64, contextLength: 8, dModel: 16, nLayers: 1, nHeads: 2, dFf: 24 });

/** Runs `tunelab doctor …args` through commander; returns stdout and the error (if it failed). */
async function cli(...args: string[]): Promise<{ out: string; error?: Error }> {
  const p = new Command('tunelab').exitOverride();
  registerDoctorCommand(p);
  const write = process.stdout.write;
  let out = '';
  process.stdout.write = ((c: string | Uint8Array) => ((out += String(c)), true)) as typeof process.stdout.write;
  try {
    await p.parseAsync(['doctor', ...args], { from: 'user' });
    return { out };
  } catch (error) {
    return { out, error: error as Error };
  } finally {
    process.stdout.write = write;
  }
}

describe('io/doctor', () => {
  let root: string;
  let m: CausalLM;
  before(async () => {
    await engineReady();
    m = new CausalLM(cfg, { seed: 3 });
  });
  beforeEach(() => {
    root = fs.mkdtempSync(path.join(os.tmpdir(), 'tunelab-doctor-'));
  });
  afterEach(() => {
    delete process.env[CRASH_ENV];
    fs.rmSync(root, { recursive: true, force: true });
  });
  after(() => m.dispose());

  it('reports a folder a crash left missing and the temps beside it; --fix puts it back and removes them', async () => {
    const run = path.join(root, 'run');
    await saveModel(path.join(run, 'final'), m);
    await saveModel(path.join(run, 'checkpoint-2'), m);
    process.env[CRASH_ENV] = 'moved-aside';
    await assert.rejects(saveModel(path.join(run, 'final'), m), SimulatedCrash);
    delete process.env[CRASH_ENV];

    const before = doctor(run);
    const find = (re: RegExp) => before.findings.filter((f) => re.test(`${f.level} ${f.path}: ${f.message}`));
    assert.equal(find(/^ok .*checkpoint-2: model \(llama, \d+ tensors/).length, 1);
    assert.equal(find(/^problem .*run.final: missing: an interrupted save moved it aside \(\.final\.new-/).length, 1);
    assert.equal(find(/^problem .*\.final\.new-.*renames it back into place/).length, 1);
    assert.equal(find(/^problem .*\.final\.old-.*writer pid \d+ is dead/).length, 1);
    assert.equal(before.problems, 3);
    const { out, error } = await cli(run);
    assert.match(out, /PROBLEM {2}.*final: missing/);
    assert.match(error?.message ?? '', /run: 3 problems; `tunelab doctor --fix`/);

    const fixed = await cli(run, '--fix');
    assert.equal(fixed.error, undefined, fixed.out);
    assert.match(fixed.out, /^fixed: tunelab: .*final: installed the complete new save/m);
    assert.deepEqual(fs.readdirSync(run).sort(), ['checkpoint-2', 'final']);
    assert.equal(doctor(run).findings.filter((f) => f.level === 'ok').length, 2);
  });

  it('names a damaged folder and the file; leaves a live writer alone', async () => {
    const dir = path.join(root, 'model');
    await saveModel(dir, m);
    const weights = path.join(dir, 'model.safetensors');
    fs.truncateSync(weights, fs.statSync(weights).size - 4);
    const live = spawn(process.execPath, ['-e', 'setTimeout(() => {}, 60000)']);
    try {
      const temp = path.join(root, `.model.tmp-${HOST_TAG}-${live.pid}-0123456789ab`);
      fs.mkdirSync(temp);
      const report = doctor(dir, { fix: true });
      const text = report.findings.map((f) => `${f.level} ${f.path}: ${f.message}`).join('\n');
      assert.match(text, /^problem .*model: cannot be loaded: .*model\.safetensors: .*4 bytes missing \(truncated file\?\)/m);
      assert.match(text, /^note .*\.model\.tmp-.*partial save of .*model \(0 B\); writer pid \d+ is running: left alone/m);
      assert.ok(fs.existsSync(temp));
      assert.equal(report.problems, 1);
    } finally {
      live.kill('SIGKILL');
    }
  });
});
