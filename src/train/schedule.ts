/** Learning-rate schedules with linear warmup, as Hugging Face's `get_scheduler`. */

/** Shape of the learning rate after warmup. */
export type ScheduleName = 'linear' | 'cosine' | 'constant';

/** Inputs of {@link learningRateAt}. */
export interface ScheduleOptions {
  /** Peak learning rate, reached at the end of warmup. */
  lr: number;
  schedule: ScheduleName;
  /** Steps of linear warmup from 0 to `lr`. */
  warmupSteps: number;
  /** Total optimizer steps; linear and cosine decay reach their floor here. */
  totalSteps: number;
  /** Floor of linear/cosine decay as a fraction of `lr` (0 as in HF). */
  minLrRatio: number;
}

/**
 * Learning rate of optimizer step `step` (0-based).
 *
 * @example
 * learningRateAt(5, { lr: 1e-3, schedule: 'cosine', warmupSteps: 10, totalSteps: 100, minLrRatio: 0 }); // 5e-4
 */
export function learningRateAt(step: number, o: ScheduleOptions): number {
  if (o.warmupSteps > 0 && step < o.warmupSteps) return (o.lr * step) / o.warmupSteps;
  if (o.schedule === 'constant') return o.lr;
  const span = Math.max(1, o.totalSteps - o.warmupSteps);
  const progress = Math.min(1, (step - o.warmupSteps) / span);
  const decay = o.schedule === 'cosine' ? 0.5 * (1 + Math.cos(Math.PI * progress)) : 1 - progress;
  return o.lr * (o.minLrRatio + (1 - o.minLrRatio) * decay);
}

/**
 * Optimizer steps for `epochs` passes over `rows` rows (HF `num_train_epochs`): ⌈epochs · rows /
 * (batchSize · gradAccumSteps)⌉, at least 1. Fractional epochs are allowed.
 *
 * @example
 * stepsForEpochs(1, 1000, 8, 1); // 125
 */
export function stepsForEpochs(epochs: number, rows: number, batchSize: number, gradAccumSteps = 1): number {
  if (!(epochs > 0) || !Number.isFinite(epochs)) throw new RangeError(`epochs must be a finite number > 0 (got ${epochs})`);
  return Math.max(1, Math.ceil((epochs * rows) / (batchSize * gradAccumSteps)));
}
