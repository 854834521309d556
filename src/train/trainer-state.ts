/**
 * Hugging Face's names for what tunelab logs, in one place: the `log_history` entries of
 * `trainer_state.json` (transformers `Trainer.log`: `loss`, `grad_norm`, `learning_rate`, `eval_loss`, …)
 * and the TensorBoard tags derived from them (transformers' `TensorBoardCallback`: `eval_x` → `eval/x`,
 * everything else → `train/x`). Method metrics already carry TRL's names (`rewards/chosen`,
 * `objective/kl`, `accuracy`, …) and pass through unchanged, so a tunelab run reads like a TRL run.
 */
import * as fs from 'fs';
import * as path from 'path';
import type { EvalMetrics, StepMetrics, Trainer } from './trainer';

/** One entry of HF's `log_history`: metric values and the optimizer step they belong to. */
export type LogEntry = { step: number } & Record<string, number>;

/** StepMetrics fields under HF's name. */
const STEP_NAMES: Readonly<Record<string, string>> = { loss: 'loss', gradNorm: 'grad_norm', lr: 'learning_rate', tokens: 'num_input_tokens_seen', penalty: 'penalty' };
/** Bookkeeping, not metrics: HF logs none of these per step. */
const STEP_SKIP = new Set(['step', 'tokensPerSec', 'elapsedMs', 'etaMs', 'peakBytes']);
const EVAL_NAMES: Readonly<Record<string, string>> = { evalLoss: 'eval_loss', perplexity: 'eval_perplexity' };

/** Finite numbers only: JSON cannot hold NaN (DPO's eval perplexity) and HF logs none. */
function entry(step: number, row: object, names: Readonly<Record<string, string>>, skip: ReadonlySet<string>, prefix: string): LogEntry {
  const out: LogEntry = { step };
  for (const [k, v] of Object.entries(row)) {
    if (skip.has(k) || typeof v !== 'number' || !Number.isFinite(v)) continue;
    out[names[k] ?? `${prefix}${k}`] = v;
  }
  return out;
}

/** HF `log_history` entry of a training step. */
export function stepLogEntry(m: StepMetrics): LogEntry {
  return entry(m.step, m, STEP_NAMES, STEP_SKIP, '');
}

/** HF `log_history` entry of an evaluation (`eval_loss`, `eval_<metric>`). */
export function evalLogEntry(m: EvalMetrics): LogEntry {
  return entry(m.step, m, EVAL_NAMES, new Set(['step']), 'eval_');
}

/** Steps and evals as one `log_history`, in step order (an eval after the step it follows, as HF logs them). */
export function logHistory(steps: readonly StepMetrics[], evals: readonly EvalMetrics[] = []): LogEntry[] {
  const tagged = [...steps.map((m) => ({ e: stepLogEntry(m), order: 0 })), ...evals.map((m) => ({ e: evalLogEntry(m), order: 1 }))];
  return tagged.sort((a, b) => a.e.step - b.e.step || a.order - b.order).map((t) => t.e);
}

/** transformers' `rewrite_logs`: the TensorBoard tags of a log entry (`step` is the event's step, not a scalar). */
export function tensorboardScalars(e: LogEntry): Record<string, number> {
  const out: Record<string, number> = {};
  for (const [k, v] of Object.entries(e)) {
    if (k === 'step') continue;
    out[k.startsWith('eval_') ? `eval/${k.slice(5)}` : k.startsWith('test_') ? `test/${k.slice(5)}` : `train/${k}`] = v;
  }
  return out;
}

/** Every object's keys in code-point order, at every depth, as Python's `json.dumps(sort_keys=True)` writes them. */
function sortKeys<T>(v: T): T {
  if (Array.isArray(v)) return v.map(sortKeys) as T;
  if (v === null || typeof v !== 'object') return v;
  return Object.fromEntries(Object.entries(v).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)).map(([k, x]) => [k, sortKeys(x)])) as T;
}

/**
 * `trainer_state.json` as transformers' `TrainerState.save_to_json` writes it (every dataclass field,
 * keys sorted). tunelab logs every step (`logging_steps` 1); the best metric is the eval loss, lower is
 * better (HF with `metric_for_best_model="loss"`).
 */
export interface HfTrainerState {
  best_global_step: number | null;
  best_metric: number | null;
  best_model_checkpoint: string | null;
  epoch: number | null;
  eval_steps: number;
  global_step: number;
  is_hyper_param_search: boolean;
  is_local_process_zero: boolean;
  is_world_process_zero: boolean;
  log_history: LogEntry[];
  logging_steps: number;
  max_steps: number;
  num_input_tokens_seen: number;
  num_train_epochs: number;
  save_steps: number;
  stateful_callbacks: Record<string, { args: Record<string, boolean>; attributes: Record<string, never> }>;
  total_flos: number;
  train_batch_size: number | null;
  trial_name: string | null;
  trial_params: null;
}

/**
 * The HF trainer state of a {@link Trainer} now, for a checkpoint written to `checkpointDir`.
 * `best_model_checkpoint` is `<outDir>/checkpoint-<best step>` when that checkpoint exists or is the one
 * being written (HF sets it at save time the same way).
 *
 * @example
 * writeJsonAtomic('runs/x/checkpoint-100/trainer_state.json', hfTrainerState(trainer, 'runs/x/checkpoint-100'));
 */
export function hfTrainerState(trainer: Pick<Trainer<unknown>, 'step' | 'tokens' | 'history' | 'evals' | 'config'>, checkpointDir?: string): HfTrainerState {
  const c = trainer.config;
  let best: EvalMetrics | undefined;
  for (const e of trainer.evals) if (Number.isFinite(e.evalLoss) && (!best || e.evalLoss < best.evalLoss)) best = e;
  let bestCheckpoint: string | null = null;
  if (best && c.outDir) {
    const dir = path.join(c.outDir, `checkpoint-${best.step}`);
    if (dir === checkpointDir || fs.existsSync(dir)) bestCheckpoint = dir;
  }
  return sortKeys<HfTrainerState>({
    best_global_step: best?.step ?? null,
    best_metric: best?.evalLoss ?? null,
    best_model_checkpoint: bestCheckpoint,
    epoch: null,
    eval_steps: c.evalEvery > 0 ? c.evalEvery : c.maxSteps,
    global_step: trainer.step,
    is_hyper_param_search: false,
    is_local_process_zero: true,
    is_world_process_zero: true,
    log_history: logHistory(trainer.history, trainer.evals),
    logging_steps: 1,
    max_steps: c.maxSteps,
    num_input_tokens_seen: trainer.tokens,
    num_train_epochs: 0,
    save_steps: c.checkpointEvery,
    stateful_callbacks: {
      TrainerControl: {
        args: { should_epoch_stop: false, should_evaluate: false, should_log: false, should_save: true, should_training_stop: trainer.step >= c.maxSteps },
        attributes: {},
      },
    },
    total_flos: 0,
    train_batch_size: null,
    trial_name: null,
    trial_params: null,
  });
}
