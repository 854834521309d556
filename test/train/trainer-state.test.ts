import { strict as assert } from 'assert';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { CausalLM, modelConfig } from '../../src/model';
import { Trainer } from '../../src/train/trainer';
import { TokenWindows, causalLmObjective, evalWindows, evaluateLm } from '../../src/train/causal-lm';
import { evalLogEntry, logHistory, stepLogEntry, tensorboardScalars } from '../../src/train/trainer-state';
import { RESUME_STATE_FILE, checkpointWriter, resumeFrom } from '../../src/io/checkpoint';
import { base } from '../../src/lab/base';
import { dataset } from '../../src/lab/data';
import { dpo } from '../../src/rlhf/dpo';
import type { PreferenceRow } from '../../src/data/tokenize';
import { engineReady } from '../helpers';

/** Every field of transformers' `TrainerState` dataclass (trainer_callback.py), in save_to_json's sorted order. */
const HF_FIELDS = [
  'best_global_step', 'best_metric', 'best_model_checkpoint', 'epoch', 'eval_steps', 'global_step', 'is_hyper_param_search',
  'is_local_process_zero', 'is_world_process_zero', 'log_history', 'logging_steps', 'max_steps', 'num_input_tokens_seen',
  'num_train_epochs', 'save_steps', 'stateful_callbacks', 'total_flos', 'train_batch_size', 'trial_name', 'trial_params',
];
const isInt = (v: unknown) => typeof v === 'number' && Number.isInteger(v);
const read = (file: string) => JSON.parse(fs.readFileSync(file, 'utf8'));

/** HF's types for each field; log entries are `{…metrics, step}` with an integer step. */
function checkLayout(s: Record<string, unknown>, text: string): void {
  assert.deepEqual(Object.keys(s), HF_FIELDS, 'exactly TrainerState\'s fields (HF builds the dataclass from them), keys sorted');
  assert.ok(text.startsWith('{\n  "best_global_step"'), 'indent 2, as json.dumps(indent=2)');
  for (const k of ['global_step', 'max_steps', 'logging_steps', 'eval_steps', 'save_steps', 'num_train_epochs', 'num_input_tokens_seen']) assert.ok(isInt(s[k]), `${k} is an int (${s[k]})`);
  for (const k of ['is_local_process_zero', 'is_world_process_zero', 'is_hyper_param_search']) assert.equal(typeof s[k], 'boolean', k);
  assert.equal(typeof s.total_flos, 'number');
  assert.ok(Array.isArray(s.log_history));
  for (const e of s.log_history as Record<string, unknown>[]) {
    assert.ok(isInt(e.step), `log entry step ${e.step}`);
    for (const [k, v] of Object.entries(e)) assert.ok(typeof v === 'number' && Number.isFinite(v), `${k} = ${v}`);
  }
  for (const e of s.log_history as Record<string, unknown>[]) assert.deepEqual(Object.keys(e), Object.keys(e).sort(), 'entry keys sorted (sort_keys=True)');
  const control = (s.stateful_callbacks as Record<string, { args: Record<string, unknown> }>).TrainerControl;
  assert.deepEqual(Object.keys(control.args).sort(), ['should_epoch_stop', 'should_evaluate', 'should_log', 'should_save', 'should_training_stop']);
}

describe('train/trainer-state (HF trainer_state.json)', function () {
  this.timeout(300000);
  let dir: string;
  before(engineReady);
  beforeEach(() => (dir = fs.mkdtempSync(path.join(os.tmpdir(), 'trainer-state-'))));
  afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

  it('maps tunelab metrics to HF log names and HF TensorBoard tags', () => {
    const step = { step: 3, loss: 2, lr: 1e-3, gradNorm: 0.5, tokens: 96, tokensPerSec: 9, elapsedMs: 10, etaMs: 5, peakBytes: 1, 'rewards/chosen': 0.25, accuracy: 0.5 };
    assert.deepEqual(stepLogEntry(step), { step: 3, loss: 2, learning_rate: 1e-3, grad_norm: 0.5, num_input_tokens_seen: 96, 'rewards/chosen': 0.25, accuracy: 0.5 });
    const ev = { step: 3, evalLoss: 1.5, perplexity: NaN, 'rewards/margins': 0.1 };
    assert.deepEqual(evalLogEntry(ev), { step: 3, eval_loss: 1.5, 'eval_rewards/margins': 0.1 }, 'NaN left out (JSON has none)');
    assert.deepEqual(tensorboardScalars({ step: 3, loss: 2, eval_loss: 1.5, 'rewards/chosen': 0.25, test_loss: 1 }),
      { 'train/loss': 2, 'eval/loss': 1.5, 'train/rewards/chosen': 0.25, 'test/loss': 1 });
    assert.deepEqual(logHistory([step, { ...step, step: 4 }], [ev]).map((e) => [e.step, 'eval_loss' in e]), [[3, false], [3, true], [4, false]]);
  });

  it('causal LM: every checkpoint has HF\'s trainer_state.json beside tunelab\'s resume state', async () => {
    const ids = Array.from({ length: 3000 }, (_, i) => (i % 7 === 6 ? (i * 31) % 64 : (i * 3) % 13));
    const model = new CausalLM(modelConfig({ vocabSize: 64, contextLength: 16, dModel: 32, nLayers: 1, nHeads: 4, dFf: 64 }), { seed: 1 });
    const make = () => new Trainer(model, causalLmObjective, new TokenWindows(ids, 16, 4, 3), { lr: 3e-3, maxSteps: 6, evalEvery: 2, checkpointEvery: 2, outDir: dir }, {
      checkpoints: checkpointWriter(), evaluate: (m) => evaluateLm(m, evalWindows(ids.slice(0, 200), 16, 8)),
    });
    const t = make();
    const result = await t.train();
    t.dispose();
    const text = fs.readFileSync(path.join(dir, 'checkpoint-6', 'trainer_state.json'), 'utf8');
    const s = JSON.parse(text);
    checkLayout(s, text);
    assert.equal(s.global_step, 6);
    assert.equal(s.max_steps, 6);
    assert.equal(s.save_steps, 2);
    assert.equal(s.eval_steps, 2);
    assert.equal(s.logging_steps, 1);
    assert.equal(s.num_input_tokens_seen, result.history.at(-1)!.tokens);
    const train = s.log_history.filter((e: Record<string, number>) => 'loss' in e);
    const evals = s.log_history.filter((e: Record<string, number>) => 'eval_loss' in e);
    assert.deepEqual(train.map((e: Record<string, number>) => [e.step, e.loss, e.grad_norm, e.learning_rate, e.num_input_tokens_seen]),
      result.history.map((m) => [m.step, m.loss, m.gradNorm, m.lr, m.tokens]));
    // The Trainer's final eval (step 6) runs after the last checkpoint is written.
    const saved = result.evals.filter((m) => m.step < 6);
    assert.deepEqual(saved.map((m) => m.step), [2, 4]);
    assert.deepEqual(evals.map((e: Record<string, number>) => [e.step, e.eval_loss, e.eval_perplexity]), saved.map((m) => [m.step, m.evalLoss, m.perplexity]));
    assert.equal(s.log_history.length, train.length + evals.length);
    const best = saved.reduce((a, b) => (b.evalLoss < a.evalLoss ? b : a));
    assert.equal(s.best_metric, best.evalLoss);
    assert.equal(s.best_global_step, best.step);
    assert.equal(s.best_model_checkpoint, path.join(dir, `checkpoint-${best.step}`));
    assert.ok(fs.existsSync(s.best_model_checkpoint));
    assert.equal(s.stateful_callbacks.TrainerControl.args.should_training_stop, true);
    // An earlier checkpoint holds the history up to its step only.
    const early = read(path.join(dir, 'checkpoint-2', 'trainer_state.json'));
    assert.equal(early.global_step, 2);
    assert.deepEqual(early.log_history.map((e: Record<string, number>) => e.step), [1, 2, 2]);
    assert.equal(early.stateful_callbacks.TrainerControl.args.should_training_stop, false);

    // Resume reads tunelab's own file, and still reads checkpoints that kept it in trainer_state.json.
    assert.equal(read(path.join(dir, 'checkpoint-2', RESUME_STATE_FILE)).format, 'tunelab-trainer-state');
    const r = make();
    resumeFrom(r as Trainer<unknown>, path.join(dir, 'checkpoint-2'));
    assert.equal(r.step, 2);
    r.dispose();
    fs.renameSync(path.join(dir, 'checkpoint-4', RESUME_STATE_FILE), path.join(dir, 'checkpoint-4', 'trainer_state.json'));
    const old = make();
    resumeFrom(old as Trainer<unknown>, path.join(dir, 'checkpoint-4'));
    assert.equal(old.step, 4);
    old.dispose();
    model.dispose();
  });

  it('DPO: log_history carries TRL\'s metric names for train and eval entries', async () => {
    const { model, tokenizer } = await base('tiny-llama');
    const rows = (dataset('preferences') as unknown as PreferenceRow[]).slice(0, 12);
    const held = (dataset('preferences', 'heldout') as unknown as PreferenceRow[]).slice(0, 4);
    const r = await dpo(model, tokenizer, rows, { maxSteps: 3, batchSize: 4, evalRows: held, evalEvery: 1, checkpointEvery: 2, outDir: dir }, { checkpoints: checkpointWriter(tokenizer) });
    const text = fs.readFileSync(path.join(dir, 'checkpoint-2', 'trainer_state.json'), 'utf8');
    const s = JSON.parse(text);
    checkLayout(s, text);
    const names = ['rewards/chosen', 'rewards/rejected', 'rewards/accuracies', 'rewards/margins', 'logps/chosen', 'logps/rejected', 'logits/chosen', 'logits/rejected'] as const;
    const train = s.log_history.filter((e: Record<string, number>) => 'loss' in e);
    const evals = s.log_history.filter((e: Record<string, number>) => 'eval_loss' in e);
    assert.deepEqual(train.map((e: Record<string, number>) => names.map((k) => e[k])), r.metrics.slice(0, 2).map((m) => names.map((k) => m[k])));
    assert.deepEqual(evals.map((e: Record<string, number>) => [e.step, e.eval_loss, ...names.map((k) => e[`eval_${k}`])]),
      r.evalMetrics.slice(0, 3).map((m) => [m.step, m.loss, ...names.map((k) => m[k])]));
    assert.deepEqual(evals.map((e: Record<string, number>) => e.step), [0, 1, 2], 'eval on start, then every step');
    assert.ok(!evals.some((e: Record<string, number>) => 'eval_perplexity' in e), 'no perplexity for pairs');
    model.dispose();
  });
});
