/**
 * Matrix products and lookups on quantized frozen weights ({@link QuantizedMatrix}). The float32 matrix
 * exists only while one product runs: `tf.customGrad` runs the forward in its own tidy (the decoded
 * matrix is freed at once, not kept on the tape) and decodes it again for the input gradient, as
 * bitsandbytes' 4-bit matmul does. The quantized weight gets no gradient: it is frozen by construction.
 */
import * as tf from '@tensorflow/tfjs';
import type { QuantizedMatrix } from './quant';

/** The float32 matrix of `q` as a tensor of its stored shape (the caller owns and frees it). */
export function decoded(q: QuantizedMatrix): tf.Tensor2D {
  return tf.tensor2d(q.dequantize(), [q.shape[0], q.shape[1]]);
}

/**
 * x·W (or x·Wᵀ with `transposeW`) for x (N, k) and a quantized W; differentiable in x only.
 *
 * @example
 * const y = quantMatMul(x, q);          // projection stored [in, out]
 * const logits = quantMatMul(h, e, true); // tied head: h·Eᵀ
 */
export function quantMatMul(x: tf.Tensor2D, q: QuantizedMatrix, transposeW = false): tf.Tensor2D {
  const k = transposeW ? q.shape[1] : q.shape[0];
  if (x.shape[1] !== k) throw new Error(`quantMatMul: input has ${x.shape[1]} columns but the ${q.format} weight [${q.shape}] needs ${k}`);
  const f = tf.customGrad((input: tf.Tensor | tf.GradSaveFunc) => ({
    value: tf.matMul(input as tf.Tensor2D, decoded(q), false, transposeW),
    gradFunc: (dy: tf.Tensor) => tf.tidy(() => tf.matMul(dy as tf.Tensor2D, decoded(q), false, !transposeW)),
  }));
  return f(x) as tf.Tensor2D;
}

/** Rows `ids` of a quantized table (the token embedding), float32 (…ids, d); the table is decoded for the lookup only. */
export function quantGather(q: QuantizedMatrix, ids: tf.Tensor): tf.Tensor {
  // No gradient path reaches the table (nothing trainable feeds it), so a plain tidy frees it safely.
  return tf.tidy(() => tf.gather(decoded(q), ids));
}
