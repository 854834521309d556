import { strict as assert } from 'assert';
import { execFileSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { SummaryWriter, crc32c, eventFileBytes, maskedCrc32c, tfRecord } from '../../src/io/tfevents';
import { lab } from '../../src/lab/lab';
import { dataset } from '../../src/lab/data';
import type { Run } from '../../src/lab/lab';
import { engineReady } from '../helpers';
import { crc32cBitwise, decodeEvent, mask, readEventFile, readRecords } from './tfevents-reader';

const ascii = (s: string) => new TextEncoder().encode(s);

/** HF's TensorBoard tag of each JSONL column (transformers Trainer.log names, then rewrite_logs' prefixes). */
const STEP_TAGS: Record<string, string> = {
  loss: 'train/loss', lr: 'train/learning_rate', gradNorm: 'train/grad_norm', tokens: 'train/num_input_tokens_seen', penalty: 'train/penalty',
};
const NOT_LOGGED = new Set(['step', 'tokensPerSec', 'elapsedMs', 'etaMs', 'peakBytes']);
const EVAL_TAGS: Record<string, string> = { evalLoss: 'eval/loss', perplexity: 'eval/perplexity' };

const jsonl = (file: string): Record<string, unknown>[] =>
  fs.existsSync(file) ? fs.readFileSync(file, 'utf8').split('\n').filter((l) => l.trim()).map((l) => JSON.parse(l)) : [];

/** Every scalar the run's JSONL files hold, keyed `tag@step`, as float32. */
function expectedScalars(runDir: string): Map<string, number> {
  const want = new Map<string, number>();
  const put = (tag: string, step: number, v: unknown) => {
    if (typeof v !== 'number') return; // null: NaN/undefined in JSON, e.g. DPO's eval perplexity
    const key = `${tag}@${step}`;
    assert.ok(!want.has(key), `${key} twice in the JSONL log`);
    want.set(key, Math.fround(v));
  };
  for (const row of jsonl(path.join(runDir, 'steps.jsonl'))) {
    for (const [k, v] of Object.entries(row)) if (!NOT_LOGGED.has(k)) put(STEP_TAGS[k] ?? `train/${k}`, row.step as number, v);
  }
  for (const row of jsonl(path.join(runDir, 'evals.jsonl'))) {
    for (const [k, v] of Object.entries(row)) if (k !== 'step') put(EVAL_TAGS[k] ?? `eval/${k}`, row.step as number, v);
  }
  for (const row of jsonl(path.join(runDir, 'forgetting.jsonl'))) {
    put(`eval/${row.set}_loss`, row.step as number, row.loss);
    put(`eval/${row.set}_perplexity`, row.step as number, row.perplexity);
  }
  return want;
}

/** Decodes the run's one event file and checks it holds exactly the JSONL log's scalars. */
function checkRun(run: Run, mustHave: string[]): Map<string, number> {
  const runDir = path.join(run.runLog.dir, run.record.run);
  const files = run.runLog.eventFiles(run.record.run);
  assert.equal(files.length, 1, `one event file in ${runDir}`);
  assert.match(path.basename(files[0]), /^events\.out\.tfevents\.\d{10}\./);
  const events = readEventFile(files[0]);
  assert.equal(events[0].fileVersion, 'brain.Event:2');
  const got = new Map<string, number>();
  const end = Date.parse(run.record.finishedAt) / 1000;
  for (const e of events.slice(1)) {
    assert.ok(e.wallTime > end - run.record.wallMs / 1000 - 1 && e.wallTime <= end + 1, `wall time ${e.wallTime} within the run`);
    for (const v of e.values) {
      const key = `${v.tag}@${e.step}`;
      assert.ok(!got.has(key), `${key} written twice`);
      got.set(key, v.value);
    }
  }
  const want = expectedScalars(runDir);
  assert.deepEqual([...got.keys()].sort(), [...want.keys()].sort());
  for (const [k, v] of want) assert.equal(got.get(k), v, k);
  const tags = new Set([...got.keys()].map((k) => k.slice(0, k.lastIndexOf('@'))));
  for (const t of mustHave) assert.ok(tags.has(t), `tag ${t} (tags: ${[...tags].join(', ')})`);
  return got;
}

describe('io/tfevents', function () {
  this.timeout(600000);
  let dir: string;
  beforeEach(() => (dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tfevents-'))));
  afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

  it('CRC-32C has the standard check value, and the writer\'s CRC and mask match the spec', () => {
    assert.equal(crc32cBitwise(ascii('123456789')), 0xe3069283);
    assert.equal(crc32c(ascii('123456789')), 0xe3069283);
    for (const s of ['', 'a', 'brain.Event:2', 'x'.repeat(1000)]) {
      assert.equal(crc32c(ascii(s)), crc32cBitwise(ascii(s)), s);
      assert.equal(maskedCrc32c(ascii(s)), mask(crc32cBitwise(ascii(s))), s);
    }
  });

  it('frames records the reader accepts and refuses a flipped byte or a cut file, naming the offset', () => {
    const a = tfRecord(ascii('hello'));
    const b = tfRecord(new Uint8Array(300).fill(7));
    assert.equal(a.length, 12 + 5 + 4);
    const both = new Uint8Array([...a, ...b]);
    assert.deepEqual(readRecords(both).map((r) => r.length), [5, 300]);
    const flipped = both.slice();
    flipped[a.length + 20] ^= 1;
    assert.throws(() => readRecords(flipped, 'f'), new RegExp(`f@${a.length}: data CRC mismatch`));
    const badLen = both.slice();
    badLen[0] = 6;
    assert.throws(() => readRecords(badLen, 'f'), /f@0: length CRC mismatch/);
    assert.throws(() => readRecords(both.subarray(0, both.length - 2), 'f'), /truncated record data/);
  });

  it('SummaryWriter writes the file version first, then scalars with step, wall time and float32 value', () => {
    const w = new SummaryWriter(dir, 1700000000.25);
    w.addScalar('train/loss', 2.5, 1, 1700000001.5);
    w.addScalar('eval/loss', 0.1, 2 ** 40, 1700000002);
    w.addScalars(3, { 'a/b': -1e-3, c: 123456.789 }, 1700000003);
    w.close();
    w.close();
    assert.throws(() => w.addScalar('x', 1, 1), /writer is closed/);
    assert.match(path.basename(w.file), new RegExp(`^events\\.out\\.tfevents\\.1700000000\\.${os.hostname().replace(/[.]/g, '\\.')}\\.${process.pid}\\.0$`));
    const events = readEventFile(w.file);
    assert.deepEqual(events, [
      { wallTime: 1700000000.25, step: 0, fileVersion: 'brain.Event:2', values: [] },
      { wallTime: 1700000001.5, step: 1, values: [{ tag: 'train/loss', value: 2.5 }] },
      { wallTime: 1700000002, step: 2 ** 40, values: [{ tag: 'eval/loss', value: Math.fround(0.1) }] },
      { wallTime: 1700000003, step: 3, values: [{ tag: 'a/b', value: Math.fround(-1e-3) }, { tag: 'c', value: Math.fround(123456.789) }] },
    ]);
    // The whole-file encoder (RunLog's atomic write) gives the bytes the streaming writer appends.
    const w3 = new SummaryWriter(path.join(dir, 'w3'), 1700000000);
    w3.addScalar('train/loss', 2.5, 1, 1700000001.5);
    w3.addScalar('eval/loss', 0.1, 2, 1700000002);
    w3.close();
    assert.deepEqual(new Uint8Array(fs.readFileSync(w3.file)),
      eventFileBytes([{ tag: 'train/loss', value: 2.5, step: 1, wallTime: 1700000001.5 }, { tag: 'eval/loss', value: 0.1, step: 2, wallTime: 1700000002 }], 1700000000));
    // A second writer in the same second gets its own file.
    const w2 = new SummaryWriter(dir, 1700000000.25);
    w2.close();
    assert.notEqual(w2.file, w.file);
    assert.throws(() => decodeEvent(new Uint8Array([0x0a, 0x05, 0x01])), /truncated field/);
  });

  describe('runs decode with every scalar equal to the JSONL log', () => {
    before(engineReady);
    const stage = () => lab.base('tiny-llama').log(dir).show(false);

    it('continued pretraining with eval and forgetting tracking', async () => {
      const run = await stage().data(dataset('domain').slice(0, 8)).eval(dataset('domain', 'heldout').slice(0, 2).map((d) => String(d).slice(0, 1500))).track({ every: 2, windows: 1 })
        .pretrain({ maxSteps: 4, seqLen: 32, batchSize: 4, lr: 1e-3, evalEvery: 2 });
      const got = checkRun(run, ['train/loss', 'train/learning_rate', 'train/grad_norm', 'train/num_input_tokens_seen', 'eval/loss', 'eval/perplexity', 'eval/general_loss', 'eval/target_loss']);
      assert.equal(got.get('train/loss@1'), Math.fround(run.result.history[0].loss));
      assert.equal(got.get('eval/loss@4'), Math.fround(run.result.evals.at(-1)!.evalLoss));
      run.dispose();
    });

    it('DPO with eval: TRL\'s reward metrics as train/… and eval/… tags', async () => {
      const prefs = dataset('preferences').slice(0, 16);
      const run = await stage().data(prefs).eval(dataset('preferences', 'heldout').slice(0, 4)).dpo({ maxSteps: 3, batchSize: 4, evalEvery: 2 });
      const got = checkRun(run, ['train/loss', 'train/learning_rate', 'train/grad_norm', 'train/rewards/chosen', 'train/rewards/rejected', 'train/rewards/margins',
        'train/rewards/accuracies', 'train/logps/chosen', 'train/logits/chosen', 'train/logits/rejected', 'eval/loss', 'eval/rewards/chosen', 'eval/rewards/margins', 'eval/logits/chosen']);
      const dpoResult = run.result as unknown as { metrics: Record<string, number>[]; evalMetrics: Record<string, number>[] };
      assert.equal(got.get('train/rewards/margins@2'), Math.fround(dpoResult.metrics[1]['rewards/margins']));
      assert.equal(got.get('eval/rewards/chosen@0'), Math.fround(dpoResult.evalMetrics[0]['rewards/chosen']));
      run.dispose();
    });

    it('reward model with eval: accuracy as TRL logs it', async () => {
      const prefs = dataset('preferences').slice(0, 16);
      const run = await stage().data(prefs).eval(dataset('preferences', 'heldout').slice(0, 4)).rewardModel({ maxSteps: 2, batchSize: 4 });
      checkRun(run, ['train/loss', 'train/accuracy', 'eval/loss', 'eval/accuracy', 'eval/margin', 'eval/min_reward', 'eval/mean_reward', 'eval/max_reward']);
      run.dispose();
    });

    it('PPO: TRL\'s objective/policy/loss/val metrics as train/… tags', async () => {
      const run = await stage().data(['The river was', 'In the morning we', 'She said that']).ppo((_p, r) => r.length / 10, { maxSteps: 2, batchSize: 2, responseLength: 4 });
      checkRun(run, ['train/loss', 'train/objective/kl', 'train/objective/scores', 'train/objective/rlhf_reward', 'train/policy/approxkl_avg', 'train/policy/clipfrac_avg',
        'train/loss/policy_avg', 'train/loss/value_avg', 'train/val/ratio', 'train/eps', 'train/episode']);
      run.dispose();
    });
  });

  it('TensorBoard\'s own EventAccumulator reads the file (skipped without the tensorboard Python package)', function () {
    try {
      execFileSync('/usr/bin/python3', ['-c', 'import tensorboard'], { stdio: 'ignore' });
    } catch {
      this.skip();
    }
    const w = new SummaryWriter(dir, 1700000000);
    w.addScalar('train/loss', 2.5, 1, 1700000001);
    w.addScalar('train/loss', 2.25, 2, 1700000002);
    w.close();
    const script = 'import sys, json\nfrom tensorboard.backend.event_processing.event_accumulator import EventAccumulator\n'
      + 'a = EventAccumulator(sys.argv[1]); a.Reload()\nprint(json.dumps([[e.step, e.value] for e in a.Scalars("train/loss")]))';
    const out = JSON.parse(execFileSync('/usr/bin/python3', ['-c', script, dir], { encoding: 'utf8' }));
    assert.deepEqual(out, [[1, 2.5], [2, 2.25]]);
  });
});
