/**
 * The one training loop every method shares (minGPT's trainer.py, TRL's base trainer): a method supplies
 * an {@link Objective} (loss of a batch) and a {@link BatchSource}; the loop owns AdamW, the schedule,
 * clipping, accumulation, eval, early stop, checkpoints and the metric events that feed charts.
 */
import { basename } from 'path';
import * as tf from '@tensorflow/tfjs';
import type { CausalLM } from '../model/transformer';
import { withGradientCheckpointing } from '../model/checkpoint';
import { AdamW, clipScale, globalNorm } from './optimizer';
import { ScheduleName, learningRateAt } from './schedule';
import { Emitter } from '../util/events';
import { withDefaults } from '../util/options';
import { ensureEngine } from '../engine/backend';
import type { BatchSource, Objective, Penalty } from './types';
import { trackRun, type Stoppable } from './interrupt';
import { checkOutputPlace, checkpointBytes } from './output-check';

export type { Objective, BatchSource } from './types';

/** Shared knobs of every method; defaults follow Hugging Face `TrainingArguments` where it has one. */
export interface TrainConfig {
  /** Peak learning rate (HF: 5e-5). */
  lr: number;
  /** Optimizer steps to run. */
  maxSteps: number;
  /** Micro-batches whose gradients are averaged before each optimizer step. */
  gradAccumSteps: number;
  /** Learning-rate shape after warmup (HF: linear). */
  schedule: ScheduleName;
  /** Steps of linear warmup. */
  warmupSteps: number;
  /** Floor of linear/cosine decay as a fraction of `lr`. */
  minLrRatio: number;
  /** Decoupled weight decay λ (HF: 0); never applied to norms, biases or embeddings. */
  weightDecay: number;
  beta1: number;
  beta2: number;
  eps: number;
  /** Clip gradients to this global L2 norm (HF: 1.0; 0 = off). */
  maxGradNorm: number;
  /** Evaluate every N optimizer steps (0 = only at the end, if eval data is given). */
  evalEvery: number;
  /** Stop when eval loss has not improved by `earlyStopThreshold` for this many evals (0 = off). */
  earlyStopPatience: number;
  earlyStopThreshold: number;
  /** Save a checkpoint every N steps into `outDir` (0 = off). */
  checkpointEvery: number;
  /** Folder for checkpoints (`checkpoint-<step>/`). */
  outDir?: string;
  /** Seed of dropout masks (and of the data order, where the data source takes it). HF: 42. */
  seed: number;
  /**
   * Run the first step under tfjs's profiler and record its peak tensor memory as
   * `StepMetrics.peakBytes` (one step: every step of a run has the same shapes, and profiling all would
   * keep a record per kernel call).
   */
  profileMemory: boolean;
  /**
   * Recompute each decoder block's activations in the backward pass instead of keeping them (HF:
   * `gradient_checkpointing`, default false): lower peak memory, about one more forward per step, the
   * same gradients. Sets {@link CausalLM.gradientCheckpointing} while the step's gradients are computed.
   */
  gradientCheckpointing: boolean;
}

/** Defaults of {@link TrainConfig}. */
export const trainDefaults: Readonly<TrainConfig> = Object.freeze({
  lr: 5e-5, maxSteps: 100, gradAccumSteps: 1, schedule: 'linear', warmupSteps: 0, minLrRatio: 0, weightDecay: 0,
  beta1: 0.9, beta2: 0.999, eps: 1e-8, maxGradNorm: 1, evalEvery: 0, earlyStopPatience: 0, earlyStopThreshold: 0,
  checkpointEvery: 0, seed: 42, profileMemory: false, gradientCheckpointing: false,
});

/** Every {@link TrainConfig} field (the defaults' and `outDir`), for the run-time option check of the training verbs. */
export const trainConfigKeys: readonly string[] = Object.freeze([...Object.keys(trainDefaults), 'outDir']);

/** Metrics of one optimizer step, streamed to listeners. */
export interface StepMetrics {
  step: number;
  loss: number;
  lr: number;
  /** Global gradient norm before clipping. */
  gradNorm: number;
  /** Tokens processed so far. */
  tokens: number;
  tokensPerSec: number;
  elapsedMs: number;
  /** Estimated time to `maxSteps`. */
  etaMs: number;
  /** Value of the configured {@link TrainerOptions.penalty} (mean over micro-batches); `loss` excludes it. */
  penalty?: number;
  /** Peak bytes of live tensors during this step (only the first step, with `profileMemory`). */
  peakBytes?: number;
}

/** Result of an evaluation. */
export interface EvalMetrics {
  step: number;
  evalLoss: number;
  perplexity: number;
}

/** Events of a {@link Trainer}. */
export interface TrainerEvents {
  step: StepMetrics;
  eval: EvalMetrics;
  checkpoint: { step: number; path: string };
  end: TrainResult;
}

/** What {@link Trainer.train} returns. */
export interface TrainResult {
  steps: number;
  history: StepMetrics[];
  evals: EvalMetrics[];
  stoppedEarly: boolean;
  lastCheckpoint?: string;
  /**
   * Stopped by {@link Trainer.stop} (Ctrl-C, a notebook interrupt) before `maxSteps`: the model holds the
   * weights after `steps`, and `lastCheckpoint` is the resumable checkpoint written at that step if the
   * trainer has an `outDir` and a checkpoint writer.
   */
  interrupted?: boolean;
  /** Wall time of this `train()` call. */
  elapsedMs?: number;
  /** Wall time of the whole run: this call plus the calls before a checkpoint it was resumed from. */
  totalElapsedMs?: number;
}

/** Raised when a loss or gradient stops being finite; names the step and the last good checkpoint. */
export class NonFiniteLossError extends Error {
  constructor(readonly step: number, readonly value: number, readonly what: 'loss' | 'gradient norm', readonly lastCheckpoint?: string) {
    super(`training stopped at step ${step}: ${what} is ${value}; last good checkpoint: ${lastCheckpoint ?? 'none (no checkpoint saved yet)'}`);
    this.name = 'NonFiniteLossError';
  }
}

/** Saves and restores whole training runs; implemented in src/io/checkpoint.ts. */
export interface CheckpointIO {
  save(dir: string, trainer: Trainer<unknown>): Promise<void>;
}

/** Options of a {@link Trainer} beyond {@link TrainConfig}. */
export interface TrainerOptions<B> {
  /** Held-out evaluation: a function returning a fresh pass over eval batches, and its loss. */
  evaluate?: (model: CausalLM) => Promise<{ loss: number; perplexity: number }>;
  /** Writes `checkpoint-<step>` folders (needed when `checkpointEvery` > 0). */
  checkpoints?: CheckpointIO;
  /**
   * A regularizer added to every micro-batch's loss (e.g. `l2sp`, `ewc` from regularize.ts); its gradient flows,
   * its value is reported as `StepMetrics.penalty`. The caller owns it and disposes it after training.
   */
  penalty?: Penalty;
}

type Listener<E extends keyof TrainerEvents> = (event: TrainerEvents[E]) => void;

/**
 * Trains a model on an objective.
 *
 * @example
 * const trainer = new Trainer(model, causalLmObjective, new TokenWindows(ids, 64, 16), { lr: 1e-3, maxSteps: 300 });
 * trainer.on('step', (m) => console.log(m.step, m.loss));
 * await trainer.train();
 */
export class Trainer<B> implements Stoppable {
  readonly config: TrainConfig;
  readonly optimizer: AdamW;
  /** Optimizer steps completed. */
  step = 0;
  tokens = 0;
  readonly history: StepMetrics[] = [];
  readonly evals: EvalMetrics[] = [];
  lastCheckpoint?: string;
  private readonly events = new Emitter<TrainerEvents>();
  private bestEval = Infinity;
  private evalsSinceBest = 0;
  private stopAsked = false;
  /** Training wall time of earlier `train()` calls (restored from checkpoints too). */
  private priorMs = 0;
  private sessionStart?: number;

  constructor(readonly model: CausalLM, readonly objective: Objective<B>, readonly data: BatchSource<B>, config: Partial<TrainConfig> = {}, readonly options: TrainerOptions<B> = {}) {
    this.config = withDefaults(trainDefaults, config, 'train', trainConfigKeys);
    validateTrainConfig(this.config);
    if (this.config.checkpointEvery > 0 && (!this.config.outDir || !options.checkpoints)) {
      throw new Error('TrainConfig.checkpointEvery needs TrainConfig.outDir and a checkpoint writer');
    }
    // Router outputs the balance penalty reads are freed inside a checkpointed block (and recorded twice).
    if (this.config.gradientCheckpointing && options.penalty?.name === 'lora_moe_balance') {
      throw new Error('TrainConfig.gradientCheckpointing cannot be combined with the LoRA-MoE balance penalty (it reads router activations, which checkpointing frees); drop one of them');
    }
    const params = model.trainableParams();
    if (params.size === 0) throw new Error('Trainer: the model has no trainable parameters');
    const { beta1, beta2, eps, weightDecay } = this.config;
    this.optimizer = new AdamW(params, { beta1, beta2, eps, weightDecay });
  }

  /** Subscribes to an event; returns a function that unsubscribes. */
  on<E extends keyof TrainerEvents>(event: E, listener: Listener<E>): () => void {
    return this.events.on(event, listener);
  }

  private emit<E extends keyof TrainerEvents>(event: E, payload: TrainerEvents[E]): void {
    this.events.emit(event, payload);
  }

  /** Learning rate of the next step. */
  get lr(): number {
    const c = this.config;
    return learningRateAt(this.step, { lr: c.lr, schedule: c.schedule, warmupSteps: c.warmupSteps, totalSteps: c.maxSteps, minLrRatio: c.minLrRatio });
  }

  /**
   * One optimizer step: accumulate gradients over `gradAccumSteps` micro-batches, clip, update.
   * Returns the mean objective loss, the pre-clip gradient norm and, with a penalty, its mean value.
   * Throws {@link NonFiniteLossError} before touching the weights if loss or norm is not finite.
   */
  async trainStep(): Promise<{ loss: number; gradNorm: number; tokens: number; penalty?: number }> {
    const params = this.model.trainableParams();
    const vars = [...params.values()];
    const k = this.config.gradAccumSteps;
    let sum: tf.NamedTensorMap | undefined;
    let lossSum = 0;
    let penaltySum = 0;
    let tokens = 0;
    const penalty = this.options.penalty;
    for (let micro = 0; micro < k; micro++) {
      const batch = this.data.next();
      tokens += this.objective.tokens(batch);
      const seed = (this.config.seed * 7919 + this.step * 104729 + micro * 31) % 2147483647;
      // With a penalty the gradient is of loss + term; both parts are kept to report them separately.
      let parts: tf.Scalar[] = [];
      const { value, grads } = withGradientCheckpointing(this.model, this.config.gradientCheckpointing, () => tf.variableGrads(() => {
        const loss = this.objective.loss(this.model, batch, { training: true, seed });
        if (!penalty) return loss;
        parts = [tf.keep(loss), tf.keep(penalty.term(this.model))];
        return tf.add(loss, parts[1]) as tf.Scalar;
      }, vars));
      this.objective.dispose(batch);
      lossSum += (await (parts[0] ?? value).data())[0];
      if (parts[1]) penaltySum += (await parts[1].data())[0];
      tf.dispose([value, ...parts]);
      if (!sum) sum = grads;
      else {
        const prev: tf.NamedTensorMap = sum;
        sum = tf.tidy(() => Object.fromEntries(Object.entries(grads).map(([n, g]) => [n, tf.add(prev[n], g)])));
        tf.dispose([Object.values(prev), Object.values(grads)]);
      }
    }
    const loss = lossSum / k;
    // Gradients in the order of `params` (variableGrads keys them by variable name), summed over the k
    // micro-batches: the mean is sum / k, so its norm is ‖sum‖ / k and 1 / k joins the clipping factor that the
    // update applies (no divided copy of every gradient).
    const summed = vars.map((v) => sum![v.name]);
    const gradNorm = (await globalNorm(summed)) / k;
    const fail = !Number.isFinite(loss) ? { v: loss, what: 'loss' as const } : !Number.isFinite(gradNorm) ? { v: gradNorm, what: 'gradient norm' as const } : undefined;
    if (fail) {
      tf.dispose(summed);
      throw new NonFiniteLossError(this.step + 1, fail.v, fail.what, this.lastCheckpoint);
    }
    const grads = new Map([...params.keys()].map((path, i) => [path, summed[i]]));
    // Clipping is a factor on every gradient, applied inside the update (PyTorch's clip_grad_norm_ semantics).
    this.optimizer.apply(grads, this.lr, clipScale(gradNorm, this.config.maxGradNorm) / k);
    tf.dispose(summed);
    this.step++;
    this.tokens += tokens;
    return { loss, gradNorm, tokens, ...(penalty && { penalty: penaltySum / k }) };
  }

  /** Runs held-out evaluation now (if configured) and records it. */
  async evaluate(): Promise<EvalMetrics | undefined> {
    if (!this.options.evaluate) return undefined;
    const r = await this.options.evaluate(this.model);
    const m: EvalMetrics = { step: this.step, evalLoss: r.loss, perplexity: r.perplexity };
    this.evals.push(m);
    this.emit('eval', m);
    return m;
  }

  /** Writes `outDir/checkpoint-<step>` now. */
  async saveCheckpoint(): Promise<string> {
    if (!this.config.outDir || !this.options.checkpoints) throw new Error('saveCheckpoint needs TrainConfig.outDir and a checkpoint writer');
    const path = require('path').join(this.config.outDir, `checkpoint-${this.step}`) as string;
    await this.options.checkpoints.save(path, this as Trainer<unknown>);
    this.lastCheckpoint = path;
    this.emit('checkpoint', { step: this.step, path });
    return path;
  }

  /**
   * Asks a running {@link train} to stop after the current step (and its eval/checkpoint): it then writes
   * `checkpoint-<step>` if it can and returns with `interrupted: true`. Asked before `train()`, no step runs.
   */
  stop(): void {
    this.stopAsked = true;
  }

  /** Whether {@link stop} was called and `train()` has not returned yet. */
  get stopRequested(): boolean {
    return this.stopAsked;
  }

  /** Training wall time so far, over every `train()` call and the run it was resumed from. */
  get elapsedMs(): number {
    return this.priorMs + (this.sessionStart === undefined ? 0 : Date.now() - this.sessionStart);
  }

  /** Trainer position for checkpoints: step, tokens, data position, history, early-stop state and time. */
  state(): TrainerState {
    return {
      step: this.step, tokens: this.tokens, data: this.data.state(), history: this.history, evals: this.evals,
      bestEval: Number.isFinite(this.bestEval) ? this.bestEval : null, evalsSinceBest: this.evalsSinceBest,
      elapsedMs: this.elapsedMs,
    };
  }

  /** Restores what {@link state} saved (the optimizer is restored separately). */
  restore(s: TrainerState): void {
    this.step = s.step;
    this.tokens = s.tokens;
    this.data.restore(s.data);
    this.history.splice(0, this.history.length, ...s.history);
    this.evals.splice(0, this.evals.length, ...s.evals);
    this.bestEval = s.bestEval ?? Infinity;
    this.evalsSinceBest = s.evalsSinceBest;
    // States written before elapsedMs was saved: the last step's time is that of a single session.
    this.priorMs = s.elapsedMs ?? s.history.at(-1)?.elapsedMs ?? 0;
  }

  /**
   * Trains until `maxSteps` (continuing from `step` after a resume), early stop, or {@link stop} (an
   * interrupt: see ./interrupt.ts).
   */
  async train(): Promise<TrainResult> {
    await ensureEngine();
    // A checkpoint folder that cannot take a save fails now, not after the steps before the first save.
    if (this.config.outDir && this.options.checkpoints) {
      checkOutputPlace(this.config.outDir, { option: 'TrainConfig.outDir', bytesNeeded: checkpointBytes(this as Trainer<unknown>) });
    }
    const start = Date.now();
    this.sessionStart = start;
    const untrack = trackRun(this);
    try {
      return await this.runLoop(start, this.tokens, this.step);
    } finally {
      untrack();
      this.priorMs += Date.now() - start;
      this.sessionStart = undefined;
      this.stopAsked = false;
    }
  }

  private async runLoop(start: number, startTokens: number, startStep: number): Promise<TrainResult> {
    const c = this.config;
    let stoppedEarly = false;
    // A stop request is seen here, between steps (the yield at the end of each step lets signals land).
    while (this.step < c.maxSteps && !this.stopAsked) {
      const lr = this.lr;
      let peakBytes: number | undefined;
      let stepResult: Awaited<ReturnType<Trainer<B>['trainStep']>> | undefined;
      if (c.profileMemory && this.step === startStep) {
        const info = await tf.profile(async () => {
          stepResult = await this.trainStep();
        });
        peakBytes = info.peakBytes;
      } else stepResult = await this.trainStep();
      const { loss, gradNorm, penalty } = stepResult!;
      const elapsedMs = Date.now() - start;
      const done = this.step - startStep;
      const m: StepMetrics = {
        step: this.step, loss, lr, gradNorm, tokens: this.tokens,
        tokensPerSec: ((this.tokens - startTokens) * 1000) / Math.max(1, elapsedMs), elapsedMs,
        etaMs: (elapsedMs / done) * (c.maxSteps - this.step), ...(penalty !== undefined && { penalty }), ...(peakBytes !== undefined && { peakBytes }),
      };
      this.history.push(m);
      this.emit('step', m);
      if (c.evalEvery > 0 && this.step % c.evalEvery === 0 && this.step < c.maxSteps) {
        stoppedEarly = this.afterEval(await this.evaluate());
      }
      if (c.checkpointEvery > 0 && this.step % c.checkpointEvery === 0) await this.saveCheckpoint();
      await new Promise((r) => setImmediate(r)); // let notebook displays and progress bars repaint
      if (stoppedEarly) break;
    }
    const interrupted = this.stopAsked && !stoppedEarly && this.step < c.maxSteps;
    if (interrupted) {
      // Resumable from exactly here, unless the last checkpoint already is this step.
      const saved = this.lastCheckpoint !== undefined && basename(this.lastCheckpoint) === `checkpoint-${this.step}`;
      if (!saved && this.config.outDir && this.options.checkpoints) await this.saveCheckpoint();
    } else if (!stoppedEarly && this.options.evaluate && this.evals.at(-1)?.step !== this.step) this.afterEval(await this.evaluate());
    const result: TrainResult = {
      steps: this.step, history: this.history, evals: this.evals, stoppedEarly, lastCheckpoint: this.lastCheckpoint, interrupted,
      elapsedMs: Date.now() - start, totalElapsedMs: this.elapsedMs,
    };
    this.emit('end', result);
    return result;
  }

  /** Updates early-stop bookkeeping; true when patience ran out. */
  private afterEval(m: EvalMetrics | undefined): boolean {
    if (!m) return false;
    if (m.evalLoss < this.bestEval - this.config.earlyStopThreshold) {
      this.bestEval = m.evalLoss;
      this.evalsSinceBest = 0;
      return false;
    }
    this.evalsSinceBest++;
    return this.config.earlyStopPatience > 0 && this.evalsSinceBest >= this.config.earlyStopPatience;
  }

  /** Frees the optimizer state (the model stays). */
  dispose(): void {
    this.optimizer.dispose();
  }
}

/** Serializable trainer position. */
export interface TrainerState {
  step: number;
  tokens: number;
  data: unknown;
  history: StepMetrics[];
  evals: EvalMetrics[];
  bestEval: number | null;
  evalsSinceBest: number;
  /** Training wall time up to this state, over every session of the run (absent in older checkpoints). */
  elapsedMs?: number;
}

/** Throws an error naming the option when a {@link TrainConfig} is unusable. */
export function validateTrainConfig(c: TrainConfig): void {
  const check = (ok: boolean, key: keyof TrainConfig, rule: string) => {
    if (!ok) throw new Error(`TrainConfig.${key} ${rule} (got ${String(c[key])})`);
  };
  check(c.lr > 0, 'lr', 'must be > 0');
  check(Number.isInteger(c.maxSteps) && c.maxSteps >= 0, 'maxSteps', 'must be a non-negative integer');
  check(Number.isInteger(c.gradAccumSteps) && c.gradAccumSteps >= 1, 'gradAccumSteps', 'must be an integer ≥ 1');
  check(['linear', 'cosine', 'constant'].includes(c.schedule), 'schedule', 'must be linear, cosine or constant');
  check(Number.isInteger(c.warmupSteps) && c.warmupSteps >= 0, 'warmupSteps', 'must be a non-negative integer');
  check(c.minLrRatio >= 0 && c.minLrRatio <= 1, 'minLrRatio', 'must be in [0, 1]');
  check(c.weightDecay >= 0, 'weightDecay', 'must be ≥ 0');
  check(c.beta1 >= 0 && c.beta1 < 1, 'beta1', 'must be in [0, 1)');
  check(c.beta2 >= 0 && c.beta2 < 1, 'beta2', 'must be in [0, 1)');
  check(c.eps > 0, 'eps', 'must be > 0');
  check(c.maxGradNorm >= 0, 'maxGradNorm', 'must be ≥ 0');
  check(typeof c.gradientCheckpointing === 'boolean', 'gradientCheckpointing', 'must be true or false');
  for (const key of ['evalEvery', 'earlyStopPatience', 'checkpointEvery', 'seed'] as const) {
    check(Number.isInteger(c[key]) && c[key] >= 0, key, 'must be a non-negative integer');
  }
}
