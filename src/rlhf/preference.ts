/**
 * The plumbing that SimPO, ORPO and KTO share on top of the shared {@link Trainer}: an objective that keeps
 * each micro-batch's metric tensors and reads them after the optimizer step (no sync inside the tape), a
 * held-out evaluation that averages the same metrics over rows, and a run that puts both on the trainer's
 * step and eval records under TRL's names (so they reach steps.jsonl, trainer_state.json and TensorBoard);
 * and, for the reference-free pair methods (SimPO, ORPO), mean log-probs, TRL's reward metrics and the run
 * from preference rows to a trained model on DPO's pair batches.
 */
import * as tf from '@tensorflow/tfjs';
import type { CausalLM } from '../model/transformer';
import type { Tokenizer } from '../tokenizer/tokenizer';
import type { PreferenceRow, TokenizeReport } from '../data/tokenize';
import { BatchSource, Objective, Trainer, TrainConfig, TrainResult, TrainerOptions, trainConfigKeys } from '../train/trainer';
import { DpoBatch, PairBatches, dpoLogProbs, disposeLm, preparePairs } from './dpo';

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

/** Completion log-prob sums and token counts of B pairs, all (B,). */
export interface PairLogProbs {
  policyChosen: tf.Tensor1D;
  policyRejected: tf.Tensor1D;
  chosenCount: tf.Tensor1D;
  rejectedCount: tf.Tensor1D;
}

/** Mean log-prob per completion token (TRL `average_log_prob=True`), and the NLL of the chosen tokens. */
export function averageLogProbs(l: PairLogProbs): { chosen: tf.Tensor1D; rejected: tf.Tensor1D; nll: tf.Scalar } {
  return tf.tidy(() => ({
    chosen: tf.div(l.policyChosen, tf.maximum(l.chosenCount, 1)) as tf.Tensor1D,
    rejected: tf.div(l.policyRejected, tf.maximum(l.rejectedCount, 1)) as tf.Tensor1D,
    // TRL's cross-entropy over every chosen completion token of the batch (a token mean, not a row mean).
    nll: tf.neg(tf.div(tf.sum(l.policyChosen), tf.maximum(tf.sum(l.chosenCount), 1))) as tf.Scalar,
  }));
}

/** TRL's reward metrics from per-row rewards and mean log-probs (caller disposes). */
export function rewardMetrics(rc: tf.Tensor1D, rr: tf.Tensor1D, lc: tf.Tensor1D, lr: tf.Tensor1D): Record<'rewards/chosen' | 'rewards/rejected' | 'rewards/accuracies' | 'rewards/margins' | 'logps/chosen' | 'logps/rejected', tf.Scalar> {
  return tf.tidy(() => ({
    'rewards/chosen': tf.mean(rc) as tf.Scalar,
    'rewards/rejected': tf.mean(rr) as tf.Scalar,
    'rewards/accuracies': tf.mean(tf.cast(tf.greater(rc, rr), 'float32')) as tf.Scalar,
    'rewards/margins': tf.mean(tf.sub(rc, rr)) as tf.Scalar,
    'logps/chosen': tf.mean(lc) as tf.Scalar,
    'logps/rejected': tf.mean(lr) as tf.Scalar,
  }));
}

/** Frees a reference-free pair batch. */
export function disposePairBatch(b: DpoBatch): void {
  disposeLm(b.lm);
  b.ref.dispose();
}

/** Batch loss of a pair method from its loss on log-prob sums, with TRL's `logits/*` added. */
export function pairBatchLoss<N extends string>(loss: (l: PairLogProbs) => LossAndMetrics<N>) {
  return (model: CausalLM, batch: DpoBatch, ctx: { training?: boolean; seed?: number }): LossAndMetrics<N | 'logits/chosen' | 'logits/rejected'> => tf.tidy(() => {
    const lp = dpoLogProbs(model, batch, { ...ctx, logits: true });
    const r = loss(lp);
    return { loss: r.loss, metrics: { ...r.metrics, 'logits/chosen': lp['logits/chosen']!, 'logits/rejected': lp['logits/rejected']! } };
  });
}

/** Every row of a pair set once, in order, as batches for {@link evaluateMetrics}. */
export function* pairEvalBatches(data: PairBatches): Generator<{ batch: DpoBatch; rows: number }> {
  const n = data.pairs.length;
  for (let i = 0; i < n; i += data.batchSize) {
    const index = Array.from({ length: Math.min(data.batchSize, n - i) }, (_, k) => i + k);
    yield { batch: data.batchOf(index), rows: index.length };
  }
}

/**
 * A reference-free pair method (SimPO, ORPO) end to end: rows → pairs, seeded batches, the trainer, held-out
 * metrics. `batchLoss` gives the loss and every name in `names`.
 */
export async function trainPairMethod<N extends string, C extends TrainConfig & { maxLength: number; batchSize: number; evalRows: readonly PreferenceRow[] | null; evalOnStart: boolean }>(
  method: string, model: CausalLM, tokenizer: Tokenizer, rows: readonly PreferenceRow[], c: C, names: readonly N[],
  batchLoss: (model: CausalLM, batch: DpoBatch, ctx: { training?: boolean; seed?: number }) => LossAndMetrics<N>,
  options: TrainerOptions<DpoBatch> & { onTrainer?: (t: Trainer<DpoBatch>) => void },
): Promise<MetricRun<N> & { data: { train: TokenizeReport & { pairs: number }; eval?: TokenizeReport & { pairs: number } } }> {
  if (!Number.isInteger(c.batchSize) || c.batchSize < 1) throw new RangeError(`${method}: batchSize must be a positive integer (got ${c.batchSize})`);
  if (!Number.isInteger(c.maxLength) || c.maxLength < 2) throw new RangeError(`${method}: maxLength must be an integer ≥ 2 (got ${c.maxLength})`);
  const seqLen = model.config.contextLength - model.reservedPositions();
  const train = preparePairs(model, tokenizer, rows, c.maxLength, method, 'training');
  const held = c.evalRows && c.evalRows.length ? preparePairs(model, tokenizer, c.evalRows, c.maxLength, method, 'eval') : undefined;
  const data = new PairBatches(train.pairs, tokenizer, seqLen, c.batchSize, null, c.seed ?? 42);
  const evalData = held && new PairBatches(held.pairs, tokenizer, seqLen, c.batchSize, null, 0);
  const objective = metricObjective(names, batchLoss, disposePairBatch, (b) => b.lm.inputIds.size);
  const evaluate = evalData && ((step: number) => evaluateMetrics(model, pairEvalBatches(evalData), names, batchLoss, disposePairBatch, step));
  const r = await trainWithMetrics(model, objective, names, data, c, evaluate, c.evalOnStart, options);
  return { ...r, data: { train: train.report, ...(held && { eval: held.report }) } };
}
