/**
 * The causal-LM objective: next-token cross-entropy averaged over the tokens a loss mask selects,
 * and the token-window batches it trains on.
 */
import * as tf from '@tensorflow/tfjs';
import { fusedOps, useFused } from '../engine/fused';
import { CausalLM } from '../model/transformer';
import { EpochOrder } from '../util/epochs';
import type { BatchSource, Objective } from './types';

/** One batch of next-token prediction; all arrays are (B, T). */
export interface LmBatch {
  inputIds: tf.Tensor2D;
  /** Token to predict at each position (int32). */
  targets: tf.Tensor2D;
  /** 1 where the position counts toward the loss, 0 where it does not (prompt, padding). */
  lossMask: tf.Tensor2D;
  /** Optional document ids of packed sequences. */
  segmentIds?: tf.Tensor2D;
  /** Optional positions restarting at 0 per packed document. */
  positionIds?: tf.Tensor2D;
}

/**
 * −log softmax(logits)[target] at every position: logits (B, T, V), targets (B, T) int32 → (B, T).
 * A target outside [0, V) gives 0 (it selects nothing). On the native engine one fused kernel computes it
 * and its gradient, with no (B, T, V) log-softmax written out.
 */
export function tokenCrossEntropy(logits: tf.Tensor3D, targets: tf.Tensor2D): tf.Tensor2D {
  return tf.tidy(() => {
    const [b, t, vocab] = logits.shape;
    if (useFused(logits) && targets.dtype === 'int32') {
      return tf.reshape(fusedOps.crossEntropy(tf.reshape(logits, [b * t, vocab]), tf.reshape(targets, [b * t])), [b, t]) as tf.Tensor2D;
    }
    // logsumexp − logits[target]: the one-hot picks nothing for an out-of-range target, so its lse is dropped too.
    const onehot = tf.oneHot(targets, vocab);
    const picked = tf.sum(tf.mul(logits, onehot), -1);
    return tf.mul(tf.sub(tf.logSumExp(logits, -1), picked), tf.sum(onehot, -1)) as tf.Tensor2D;
  });
}

/**
 * Mean of −log p(target) over positions where `lossMask` is 1. logits (B, T, V), targets (B, T) int32,
 * lossMask (B, T) float. A batch with an empty mask gives 0 (no division by zero).
 */
export function maskedCrossEntropy(logits: tf.Tensor3D, targets: tf.Tensor2D, lossMask: tf.Tensor2D): tf.Scalar {
  return tf.tidy(() => {
    const total = tf.sum(tf.mul(tokenCrossEntropy(logits, targets), lossMask));
    return tf.div(total, tf.maximum(tf.sum(lossMask), 1)) as tf.Scalar;
  });
}

/** The causal-LM {@link Objective}: masked next-token loss of the model on an {@link LmBatch}. */
export const causalLmObjective: Objective<LmBatch> = {
  loss(model: CausalLM, batch: LmBatch, ctx) {
    const logits = model.forward(batch.inputIds, { training: ctx.training, seed: ctx.seed, segmentIds: batch.segmentIds, positionIds: batch.positionIds });
    return maskedCrossEntropy(logits, batch.targets, batch.lossMask);
  },
  tokens(batch: LmBatch) {
    return batch.inputIds.size;
  },
  dispose(batch: LmBatch) {
    tf.dispose([batch.inputIds, batch.targets, batch.lossMask, batch.segmentIds ?? [], batch.positionIds ?? []].flat());
  },
};

/**
 * Token ids of documents, each followed by eos, as one stream (special-token strings inside the text
 * stay plain text, so a document cannot fake a boundary).
 */
export function tokenStream(tok: { encode(text: string, o: { addEos: boolean; parseSpecial: boolean }): number[] }, docs: readonly string[]): number[] {
  const out: number[] = [];
  for (const d of docs) if (d.length) for (const id of tok.encode(d, { addEos: true, parseSpecial: false })) out.push(id);
  return out;
}

/** Cuts a token stream into (T + 1)-token windows: inputs are the first T, targets the last T. */
function windowBatch(tokens: ArrayLike<number>, starts: number[], seqLen: number): LmBatch {
  const b = starts.length;
  const inputs = new Int32Array(b * seqLen);
  const targets = new Int32Array(b * seqLen);
  starts.forEach((s, i) => {
    for (let t = 0; t < seqLen; t++) {
      inputs[i * seqLen + t] = tokens[s + t];
      targets[i * seqLen + t] = tokens[s + t + 1];
    }
  });
  return {
    inputIds: tf.tensor2d(inputs, [b, seqLen], 'int32'),
    targets: tf.tensor2d(targets, [b, seqLen], 'int32'),
    lossMask: tf.ones([b, seqLen]) as tf.Tensor2D,
  };
}

function windowStarts(length: number, seqLen: number, source: string): number[] {
  const n = Math.floor((length - 1) / seqLen);
  if (n < 1) throw new Error(`${source}: ${length} tokens are too few for one window of ${seqLen + 1} tokens`);
  return Array.from({ length: n }, (_, i) => i * seqLen);
}

/**
 * Training batches of non-overlapping windows over a token stream, shuffled each epoch with a seeded
 * RNG. Its position (epoch, cursor) saves in checkpoints, so a resumed run sees the same batches.
 */
export class TokenWindows implements BatchSource<LmBatch> {
  private readonly starts: number[];
  /** Visiting order of the windows and the position in it. */
  readonly order: EpochOrder;

  constructor(private readonly tokens: ArrayLike<number>, private readonly seqLen: number, private readonly batchSize: number, seed = 42, source = 'training data') {
    this.starts = windowStarts(tokens.length, seqLen, source);
    this.order = new EpochOrder(this.starts.length, seed, 'TokenWindows');
  }

  /** Windows per epoch. */
  get windows(): number {
    return this.starts.length;
  }

  next(): LmBatch {
    return windowBatch(this.tokens, this.order.take(this.batchSize).map((i) => this.starts[i]), this.seqLen);
  }

  state(): { epoch: number; cursor: number } {
    return this.order.state();
  }

  restore(state: unknown): void {
    this.order.restore(state);
  }
}

/** Every window of a held-out token stream once, in order, in batches (for evaluation). */
export function* evalWindows(tokens: ArrayLike<number>, seqLen: number, batchSize: number, source = 'evaluation data'): Generator<LmBatch> {
  const starts = windowStarts(tokens.length, seqLen, source);
  for (let i = 0; i < starts.length; i += batchSize) yield windowBatch(tokens, starts.slice(i, i + batchSize), seqLen);
}

/**
 * Token-weighted mean loss and perplexity of a model over batches.
 *
 * @example
 * const { loss, perplexity } = await evaluateLm(model, evalWindows(ids, 64, 16));
 */
export async function evaluateLm(model: CausalLM, batches: Iterable<LmBatch>): Promise<{ loss: number; perplexity: number; tokens: number }> {
  let sum = 0;
  let count = 0;
  for (const batch of batches) {
    const [loss, mask] = tf.tidy(() => [causalLmObjective.loss(model, batch, { training: false, seed: 0 }), tf.sum(batch.lossMask)]);
    const n = (await mask.data())[0];
    sum += (await loss.data())[0] * n;
    count += n;
    tf.dispose([loss, mask]);
    causalLmObjective.dispose(batch);
  }
  const loss = count > 0 ? sum / count : NaN;
  return { loss, perplexity: Math.exp(loss), tokens: count };
}
