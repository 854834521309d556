import { strict as assert } from 'assert';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { RunLog, configJson, finalLoss, runScalars, type RunRecord } from '../../src/eval/runs';

const record = (run: string, extra: Partial<RunRecord> = {}): RunRecord => ({
  run, method: 'sft', strategy: 'full', base: 'tiny-llama', finishedAt: '2026-01-01T00:00:00.000Z', steps: 10, tokens: 1000,
  wallMs: 500, tokensPerSec: 2000, trainableParams: 10, trainablePercent: 100, finalTrainLoss: 2, finalEvalLoss: 2.5,
  forgettingDelta: 0.1, targetDelta: -0.4, config: '{}', ...extra,
});

describe('run log', () => {
  let dir: string;
  beforeEach(() => (dir = fs.mkdtempSync(path.join(os.tmpdir(), 'runlog-'))));
  afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

  it('keeps one summary row per run and each run\'s curves, readable by a new log on the same folder', () => {
    const log = new RunLog(dir);
    log.add(record('a'), { steps: [{ step: 1, loss: 3, lr: 1, gradNorm: 1, tokens: 10, tokensPerSec: 1, elapsedMs: 1, etaMs: 0 }], evals: [{ step: 1, evalLoss: 2.5, perplexity: Math.exp(2.5) }] });
    log.add(record('b', { strategy: 'last1', finalEvalLoss: 2.7 }), { forgetting: [{ step: 0, tokens: 0, set: 'general', loss: 3, perplexity: 20 }] });
    const again = new RunLog(dir);
    const t = again.table();
    assert.equal(t.numRows(), 2);
    assert.deepEqual(t.array('run'), ['a', 'b']);
    assert.deepEqual(t.array('finalEvalLoss'), [2.5, 2.7]);
    assert.equal(again.details('a').steps[0].loss, 3);
    assert.equal(again.details('a').evals[0].evalLoss, 2.5);
    assert.equal(again.details('b').forgetting[0].set, 'general');
    assert.deepEqual(again.details('b').steps, []);
    assert.equal(fs.readFileSync(path.join(dir, 'runs.jsonl'), 'utf8').trim().split('\n').length, 2);
  });

  it('never overwrites: a name in use gets a suffix, names are made file-safe', () => {
    const log = new RunLog(dir);
    assert.equal(log.add(record('sft')).run, 'sft');
    assert.equal(log.add(record('sft')).run, 'sft-2');
    assert.equal(log.add(record('sft')).run, 'sft-3');
    assert.equal(log.add(record('lora r=8 / q,v')).run, 'lora-r=8-q-v');
    assert.equal(JSON.parse(fs.readFileSync(path.join(dir, 'sft', 'run.json'), 'utf8')).run, 'sft');
    assert.throws(() => log.details('nope'), /no such run.*sft, sft-2/);
  });

  it('names the file and line of a corrupt summary line', () => {
    fs.writeFileSync(path.join(dir, 'runs.jsonl'), `${JSON.stringify(record('a'))}\n{oops\n`);
    assert.throws(() => new RunLog(dir).table(), /runs\.jsonl:2: not a JSON line/);
  });

  it('TensorBoard scalars: HF tags, wall times rebuilt from the run\'s end and each step\'s elapsed time, no NaN', () => {
    const rec = record('a', { finishedAt: '2026-01-01T00:00:10.000Z', wallMs: 10000 });
    const start = Date.parse('2026-01-01T00:00:00.000Z') / 1000;
    const scalars = runScalars(rec, {
      steps: [{ step: 1, loss: 3, lr: 0.1, gradNorm: 2, tokens: 10, tokensPerSec: 1, elapsedMs: 4000, etaMs: 4000, penalty: 0.5 }],
      evals: [{ step: 1, evalLoss: 2.5, perplexity: NaN }],
      forgetting: [{ step: 0, tokens: 0, set: 'general', loss: 3, perplexity: 20 }],
    });
    assert.deepEqual(scalars.map((s) => [s.tag, s.step, s.value, s.wallTime - start]), [
      ['train/loss', 1, 3, 4], ['train/learning_rate', 1, 0.1, 4], ['train/grad_norm', 1, 2, 4], ['train/num_input_tokens_seen', 1, 10, 4], ['train/penalty', 1, 0.5, 4],
      ['eval/loss', 1, 2.5, 4], ['eval/general_loss', 0, 3, 0], ['eval/general_perplexity', 0, 20, 0],
    ]);
    const log = new RunLog(dir);
    log.add(rec, { steps: [{ step: 1, loss: 3, lr: 0.1, gradNorm: 2, tokens: 10, tokensPerSec: 1, elapsedMs: 4000, etaMs: 4000 }] });
    assert.equal(log.eventFiles('a').length, 1);
    assert.deepEqual(log.eventFiles('nope'), []);
    log.add(record('b'));
    assert.deepEqual(log.eventFiles('b'), [], 'no scalars, no event file');
  });

  it('summarises configs and final losses', () => {
    assert.equal(configJson({ lr: 1, f: function evaluate() {}, big: Array.from({ length: 50 }, () => 0), ids: new Int32Array(3) }), '{"lr":1,"f":"[function evaluate]","big":"[50 items]","ids":"[3 values]"}');
    assert.equal(finalLoss([]), null);
    const history = Array.from({ length: 20 }, (_, i) => ({ loss: i }));
    assert.equal(finalLoss(history), (18 + 19) / 2); // last 10%
    assert.equal(finalLoss([{ loss: 4 }]), 4);
  });
});
