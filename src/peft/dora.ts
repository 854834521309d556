/**
 * DoRA: weight-decomposed low-rank adaptation (Liu et al., arXiv 2402.09353), the math of LoRA's
 * `useDora` option, with Hugging Face PEFT's semantics (`tuners/lora/dora.py`, `DoraLinearLayer`):
 *
 *   W' = m ⊙ (W + s·ΔW) / ‖W + s·ΔW‖_c,   ΔW the LoRA update, s = α/r (rsLoRA α/√r),
 *
 * m a learned magnitude per output unit, initialised to ‖W + s·ΔW‖_c so a fresh adapter is a no-op.
 * ‖·‖_c is PEFT's "column-wise" norm: for each output unit, the L2 norm over the input dimension (dim 1
 * of torch's [out, in]). tunelab stores weights [in, out], so here it is the norm over axis 0. As the
 * paper (§4.3) and PEFT do, the norm is detached in the forward pass: it follows ΔW but takes no gradient.
 */
import * as tf from '@tensorflow/tfjs';

/** ‖W‖_c of a tunelab weight [in, out]: the L2 norm of each output unit's column, shape [out]. */
export function columnNorm(w: tf.Tensor2D): tf.Tensor1D {
  return tf.tidy(() => tf.sqrt(tf.sum(tf.square(w), 0)) as tf.Tensor1D);
}

/** ‖W + s·A·B‖_c for A [in, r], B [r, out]: the norm of the adapted weight, [out]. */
export function doraWeightNorm(w: tf.Tensor2D, a: tf.Tensor2D, b: tf.Tensor2D, scale: number): tf.Tensor1D {
  return tf.tidy(() => columnNorm(tf.add(w, tf.mul(tf.matMul(a, b), scale)) as tf.Tensor2D));
}

/** {@link doraWeightNorm} as a constant for autodiff (PEFT's `weight_norm.detach()`): zero gradients. */
function detachedNorm(w: tf.Tensor2D, a: tf.Tensor2D, b: tf.Tensor2D, scale: number): tf.Tensor1D {
  const f = tf.customGrad((...args) => {
    const [wt, at, bt] = args as [tf.Tensor2D, tf.Tensor2D, tf.Tensor2D];
    return { value: doraWeightNorm(wt, at, bt, scale), gradFunc: () => [tf.zerosLike(wt), tf.zerosLike(at), tf.zerosLike(bt)] };
  });
  return f(w, a, b) as tf.Tensor1D;
}

/** What {@link doraLinear} needs of one layer. */
export interface DoraLayer {
  /** Base weight [in, out] and bias [out] (if any). */
  w: tf.Tensor2D;
  bias?: tf.Tensor1D;
  /** LoRA factors A [in, r], B [r, out] and the magnitude m [out]. */
  a: tf.Tensor2D;
  b: tf.Tensor2D;
  m: tf.Tensor1D;
  scale: number;
}

/**
 * A DoRA layer's output, as PEFT's `Linear.forward` with `use_dora`: with g = m / ‖W + s·A·B‖_c (norm
 * detached), y = inner(x) + (g − 1)⊙base + g⊙s·xd·A·B, i.e. g⊙(x·W + s·x·A·B) + b without dropout.
 * `base` is inner(x) − b when xd is x (no extra matmul; like PEFT, inner includes adapters stacked
 * beneath), else xd·W: with dropout PEFT recomputes the base on the dropped input.
 */
export function doraLinear(x: tf.Tensor2D, xd: tf.Tensor2D, y: tf.Tensor2D, l: DoraLayer): tf.Tensor2D {
  const g = tf.div(l.m, detachedNorm(l.w, l.a, l.b, l.scale));
  const base = xd === x ? (l.bias ? tf.sub(y, l.bias) : y) : tf.matMul(xd, l.w);
  const lora = tf.matMul(tf.mul(tf.matMul(xd, l.a), l.scale), l.b);
  return tf.add(y, tf.add(tf.mul(tf.sub(g, 1), base), tf.mul(g, lora))) as tf.Tensor2D;
}

/** The merged weight m ⊙ (W + s·A·B) / ‖W + s·A·B‖_c and the norm used (unmerging needs it back). */
export function doraMerge(l: Omit<DoraLayer, 'bias'>): { weight: tf.Tensor2D; norm: tf.Tensor1D } {
  return tf.tidy(() => {
    const v = tf.add(l.w, tf.mul(tf.matMul(l.a, l.b), l.scale)) as tf.Tensor2D;
    const norm = columnNorm(v);
    return { weight: tf.mul(v, tf.div(l.m, norm)) as tf.Tensor2D, norm };
  });
}

/** Undoes {@link doraMerge} given the norm it returned: W = W' / (m / norm) − s·A·B (PEFT's `unmerge`). */
export function doraUnmerge(l: Omit<DoraLayer, 'bias'>, norm: tf.Tensor1D): tf.Tensor2D {
  return tf.tidy(() => tf.sub(tf.div(l.w, tf.div(l.m, norm)), tf.mul(tf.matMul(l.a, l.b), l.scale)) as tf.Tensor2D);
}
