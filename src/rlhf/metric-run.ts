/**
 * The plumbing every preference method shares on top of the shared {@link Trainer}: an objective that keeps
 * each micro-batch's metric tensors and reads them after the optimizer step (no sync inside the tape), a
 * held-out evaluation that averages the same metrics over rows, and a run that puts both on the trainer's
 * step and eval records under TRL's names (so they reach steps.jsonl, trainer_state.json and TensorBoard).
 * DPO, SimPO, ORPO and KTO all run through it.
 */
import * as tf from '@tensorflow/tfjs';
import type { CausalLM } from '../model/transformer';
import { BatchSource, Objective, Trainer, TrainConfig, TrainResult, TrainerOptions, trainConfigKeys } from '../train/trainer';

/** Loss and named metrics of one batch; every tensor belongs to the caller. */
export interface LossAndMetrics<N extends string> {
  loss: tf.Scalar;
  metrics: Record<N, tf.Scalar>;
}

/** Loss and metrics of `model` on a batch: `ctx.training` false for evaluation. */
export type BatchLoss<B, N extends string> = (model: CausalLM, batch: B, ctx: { training?: boolean; seed?: number }) => LossAndMetrics<N>;

/** An {@link Objective} that keeps each micro-batch's metrics for the caller to read after the step. */
export interface MetricObjective<B, N extends string> extends Objective<B> {
  /** Mean of the metrics kept since the last call, then frees them; undefined when none were kept. */
  takeMetrics(): Record<N, number> | undefined;
  /** With a batch, frees it; without, frees kept metrics (after a failed step). */
  dispose(batch?: B): void;
}

/** A step's or an eval's metrics: the loss and the method's named metrics. */
export type MethodMetrics<N extends string> = { step: number; loss: number } & Record<N, number>;

/**
 * The objective of a preference method from its batch loss.
 *
 * @example
 * const objective = metricObjective(simpoMetricNames, (m, b, ctx) => simpoBatchLoss(m, b, ctx, config), disposePairBatch, (b) => b.lm.inputIds.size);
 */
export function metricObjective<B, N extends string>(names: readonly N[], batchLoss: BatchLoss<B, N>, disposeBatch: (batch: B) => void, tokens: (batch: B) => number): MetricObjective<B, N> {
  let kept: tf.Tensor1D[] = [];
  return {
    loss(model, batch, ctx) {
      const { loss, metrics } = batchLoss(model, batch, ctx);
      // Kept past variableGrads's scope; read once the step is done.
      kept.push(tf.keep(tf.stack(names.map((k) => metrics[k])) as tf.Tensor1D));
      return loss;
    },
    tokens,
    dispose(batch) {
      if (batch) disposeBatch(batch);
      else {
        tf.dispose(kept);
        kept = [];
      }
    },
    takeMetrics() {
      if (kept.length === 0) return undefined;
      const rows = tf.tidy(() => tf.stack(kept).dataSync());
      const mean = finiteMeans(rows, kept.map(() => 1), names.length);
      tf.dispose(kept);
      kept = [];
      return Object.fromEntries(names.map((k, i) => [k, mean[i]])) as Record<N, number>;
    },
  };
}

/**
 * Weighted column means of `values` (rows of `width`), each column over its finite entries only: a batch
 * with no row of a kind (KTO's desirable / undesirable metrics are NaN then) does not count for it.
 */
function finiteMeans(values: ArrayLike<number>, weights: readonly number[], width: number): number[] {
  return Array.from({ length: width }, (_, k) => {
    let s = 0;
    let w = 0;
    weights.forEach((wt, i) => {
      const v = values[i * width + k];
      if (Number.isFinite(v)) {
        s += v * wt;
        w += wt;
      }
    });
    return w > 0 ? s / w : NaN;
  });
}

/**
 * Loss and metrics of `model` over held-out batches without gradient: batch means weighted by batch rows
 * (the exact mean over rows for per-row metrics); a NaN batch value (no row of that kind) does not count.
 */
export function evaluateMetrics<B, N extends string>(
  model: CausalLM, batches: Iterable<{ batch: B; rows: number }>, names: readonly N[], batchLoss: BatchLoss<B, N>, disposeBatch: (batch: B) => void, step = 0,
): MethodMetrics<N> {
  const values: number[] = [];
  const weights: number[] = [];
  for (const { batch, rows } of batches) {
    try {
      const v = tf.tidy(() => {
        const { loss, metrics } = batchLoss(model, batch, { training: false });
        return tf.stack([loss, ...names.map((k) => metrics[k])]).dataSync();
      });
      values.push(...v);
      weights.push(rows);
    } finally {
      disposeBatch(batch);
    }
  }
  const mean = finiteMeans(values, weights, names.length + 1);
  return { step, loss: mean[0], ...Object.fromEntries(names.map((k, i) => [k, mean[i + 1]])) } as MethodMetrics<N>;
}

/** The {@link TrainConfig} part of a method's config (the Trainer refuses other keys). */
export function trainConfigOf(config: object): Partial<TrainConfig> {
  return Object.fromEntries(Object.entries(config).filter(([k]) => trainConfigKeys.includes(k))) as Partial<TrainConfig>;
}

/** What {@link trainWithMetrics} returns besides the trainer's result. */
export interface MetricRun<N extends string> extends TrainResult {
  /** Per optimizer step: the loss and the method's metrics (means over the step's micro-batches). */
  metrics: MethodMetrics<N>[];
  /** Held-out metrics at each eval (step 0 with `evalOnStart`). */
  evalMetrics: MethodMetrics<N>[];
}

/**
 * Trains with a {@link MetricObjective}: metrics on every step record, held-out metrics (from `evaluate`) on
 * every eval record, an eval before step 1 when `evalOnStart`. Frees the trainer and kept metrics.
 */
export async function trainWithMetrics<B, N extends string>(
  model: CausalLM, objective: MetricObjective<B, N>, names: readonly N[], data: BatchSource<B>, config: object,
  evaluate: ((step: number) => MethodMetrics<N>) | undefined, evalOnStart: boolean,
  options: TrainerOptions<B> & { onTrainer?: (t: Trainer<B>) => void } = {},
): Promise<MetricRun<N>> {
  const metrics: MethodMetrics<N>[] = [];
  const evalMetrics: MethodMetrics<N>[] = [];
  const holder = { t: undefined as Trainer<B> | undefined };
  const evalHook = options.evaluate ?? (evaluate && (async () => {
    const r = evaluate(holder.t?.step ?? 0);
    evalMetrics.push(r);
    // The method's loss is what early stopping watches; perplexity has no meaning for preference rows.
    return { loss: r.loss, perplexity: NaN };
  }));
  try {
    const t = new Trainer<B>(model, objective, data, trainConfigOf(config), { ...options, evaluate: evalHook });
    holder.t = t;
    t.on('step', (s) => {
      const m = objective.takeMetrics();
      if (!m) return;
      Object.assign(s, m);
      metrics.push({ step: s.step, loss: s.loss, ...m } as MethodMetrics<N>);
    });
    t.on('eval', (e) => {
      const r = evalMetrics.at(-1);
      if (r && r.step === e.step) for (const k of names) Object.assign(e, { [k]: r[k] });
    });
    options.onTrainer?.(t);
    try {
      if (evalOnStart && evalHook && t.step === 0) await t.evaluate();
      return { ...(await t.train()), metrics, evalMetrics };
    } finally {
      t.dispose();
    }
  } finally {
    objective.dispose(); // metrics kept by a step that threw
  }
}
