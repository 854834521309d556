/**
 * What the reference-free pair methods (SimPO, ORPO) share: mean completion log-probs and the chosen NLL,
 * TRL's reward metrics, and the run from preference rows to a trained model (the batch loss on DPO's pair
 * batches is dpo.ts's `pairBatchLoss`).
 */
import * as tf from '@tensorflow/tfjs';
import type { CausalLM } from '../model/transformer';
import type { Tokenizer } from '../tokenizer/tokenizer';
import type { PreferenceRow, TokenizeReport } from '../data/tokenize';
import { TrainConfig, Trainer, TrainerOptions } from '../train/trainer';
import { DpoBatch, PairBatches, disposeDpoBatch, pairEvalBatches, preparePairs } from './dpo';
import { LossAndMetrics, MetricRun, evaluateMetrics, metricObjective, trainWithMetrics } from './metric-run';

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
  const objective = metricObjective(names, batchLoss, disposeDpoBatch, (b) => b.lm.inputIds.size);
  const evaluate = evalData && ((step: number) => evaluateMetrics(model, pairEvalBatches(evalData), names, batchLoss, disposeDpoBatch, step));
  const r = await trainWithMetrics(model, objective, names, data, c, evaluate, c.evalOnStart, options);
  return { ...r, data: { train: train.report, ...(held && { eval: held.report }) } };
}
