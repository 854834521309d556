/**
 * Log-probabilities of given tokens under a model: the quantity DPO, the reward model's data and PPO
 * are written in. Completion-only: positions outside the loss mask (prompt, padding) count for nothing.
 */
import * as tf from '@tensorflow/tfjs';
import type { CausalLM } from '../model/transformer';
import { tokenCrossEntropy, type LmBatch } from '../train/causal-lm';

/** log π(targets[b, t] | inputs[b, ≤t]) for every position: (B, T); 0 where a target is outside the vocabulary. */
export function tokenLogProbs(logits: tf.Tensor3D, targets: tf.Tensor2D): tf.Tensor2D {
  return tf.tidy(() => tf.neg(tokenCrossEntropy(logits, targets)) as tf.Tensor2D);
}

/** Per-row sums of masked token log-probs and the number of counted tokens. */
export interface SequenceLogProbs {
  /** Σ_t mask·log π, (B,). */
  sum: tf.Tensor1D;
  /** Σ_t mask, (B,). */
  count: tf.Tensor1D;
  /** Σ_t mask·Σ_v logits, (B,): only with `logitSums` (TRL's `logits/*` metrics are mean completion logits). */
  logitSum?: tf.Tensor1D;
}

/**
 * Completion log-probs of each row of a batch under `model` (sum over masked targets, and their count;
 * the mean is `sum / count`, IPO's per-token average).
 *
 * @example
 * const { sum } = tf.tidy(() => sequenceLogProbs(model, batch));   // (B,) log π(y | x)
 */
export function sequenceLogProbs(model: CausalLM, batch: LmBatch, ctx: { training?: boolean; seed?: number; logitSums?: boolean } = {}): SequenceLogProbs {
  return tf.tidy(() => {
    const logits = model.forward(batch.inputIds, { training: ctx.training, seed: ctx.seed, segmentIds: batch.segmentIds, positionIds: batch.positionIds });
    const lp = tokenLogProbs(logits, batch.targets);
    return {
      sum: tf.sum(tf.mul(lp, batch.lossMask), -1) as tf.Tensor1D, count: tf.sum(batch.lossMask, -1) as tf.Tensor1D,
      ...(ctx.logitSums && { logitSum: tf.sum(tf.mul(tf.sum(logits, -1), batch.lossMask), -1) as tf.Tensor1D }),
    };
  });
}
