/** Stateless building blocks of the transformer; weights are passed in, shapes are in comments. */
import * as tf from '@tensorflow/tfjs';
import { fusedOps, useFused } from '../engine/fused';

/** Whether a norm weight/bias is one value per channel of x's last axis (what the fused kernels take). */
const perChannel = (x: tf.Tensor, ...params: tf.Tensor[]): boolean =>
  params.every((p) => p.rank === 1 && p.shape[0] === x.shape[x.rank - 1]);

/** y = x·W (+ b) with W stored [in, out], so the forward product runs untransposed. x: (N, in). */
export function linear(x: tf.Tensor2D, weight: tf.Tensor, bias?: tf.Tensor): tf.Tensor2D {
  const y = tf.matMul(x, weight as tf.Tensor2D) as tf.Tensor2D;
  return bias ? tf.add(y, bias) as tf.Tensor2D : y;
}

/** RMSNorm (Zhang & Sennrich, arXiv 1910.07467): x / rms(x) · g over the last axis. */
export function rmsNorm(x: tf.Tensor, weight: tf.Tensor, eps: number): tf.Tensor {
  if (useFused(x, weight) && perChannel(x, weight)) return fusedOps.rmsNorm(x, weight, eps);
  const ms = tf.mean(tf.square(x), -1, true);
  return tf.mul(tf.mul(x, tf.rsqrt(tf.add(ms, eps))), weight);
}

/** LayerNorm (Ba et al., arXiv 1607.06450) over the last axis. */
export function layerNorm(x: tf.Tensor, weight: tf.Tensor, bias: tf.Tensor, eps: number): tf.Tensor {
  if (useFused(x, weight, bias) && perChannel(x, weight, bias)) return fusedOps.layerNorm(x, weight, bias, eps);
  const { mean, variance } = tf.moments(x, -1, true);
  return tf.add(tf.mul(tf.mul(tf.sub(x, mean), tf.rsqrt(tf.add(variance, eps))), weight), bias);
}

/**
 * GELU, tanh approximation (GPT-2's `gelu_new`): 0.5·x·(1 + tanh(u)) with u = √(2/π)(x + 0.044715x³),
 * computed as the identical x·σ(2u), because Pow and Tanh are slow scalar loops on wasm (3x faster).
 */
export function gelu(x: tf.Tensor): tf.Tensor {
  if (useFused(x)) return fusedOps.gelu(x);
  const c = 2 * Math.sqrt(2 / Math.PI);
  return tf.mul(x, tf.sigmoid(tf.mul(x, tf.add(c, tf.mul(c * 0.044715, tf.square(x))))));
}

/** SiLU / swish: x·σ(x), the gate of SwiGLU. */
export function silu(x: tf.Tensor): tf.Tensor {
  return tf.mul(x, tf.sigmoid(x));
}

/** SwiGLU's gated product (Shazeer, arXiv 2002.05202): silu(gate)·up, one fused kernel on the native engine. */
export function swiglu(gate: tf.Tensor, up: tf.Tensor): tf.Tensor {
  if (useFused(gate, up) && tf.util.arraysEqual(gate.shape, up.shape)) return fusedOps.swiglu(gate, up);
  return tf.mul(silu(gate), up);
}

/**
 * cos/sin tables of rotary embeddings (Su et al., arXiv 2104.09864) in HF's rotate-half layout:
 * frequency i applies to dims i and i + hd/2. positions: absolute positions of the rows; returns (T, hd) each.
 */
export function ropeTables(positions: number[], hd: number, theta: number): { cos: tf.Tensor2D; sin: tf.Tensor2D } {
  const half = hd / 2;
  const cos = new Float32Array(positions.length * hd);
  const sin = new Float32Array(positions.length * hd);
  positions.forEach((p, t) => {
    for (let i = 0; i < half; i++) {
      const angle = p / Math.pow(theta, (2 * i) / hd);
      const c = Math.cos(angle);
      const s = Math.sin(angle);
      cos[t * hd + i] = cos[t * hd + i + half] = c;
      sin[t * hd + i] = sin[t * hd + i + half] = s;
    }
  });
  return { cos: tf.tensor2d(cos, [positions.length, hd]), sin: tf.tensor2d(sin, [positions.length, hd]) };
}

/**
 * rotate_half as a product: (x·R)[i] = −x[i + hd/2] for i < hd/2 and x[i − hd/2] above. One matmul on
 * XNNPACK replaces slice/neg/concat (whose gradient is a slow SplitV on wasm).
 */
export function rotateHalfMatrix(hd: number): tf.Tensor2D {
  const half = hd / 2;
  const r = new Float32Array(hd * hd);
  for (let i = 0; i < half; i++) {
    r[(i + half) * hd + i] = -1;
    r[i * hd + i + half] = 1;
  }
  return tf.tensor2d(r, [hd, hd]);
}

/** Applies RoPE to x: (B, H, T, hd) with tables (T, hd): x·cos + rotate_half(x)·sin. */
export function applyRope(x: tf.Tensor4D, cos: tf.Tensor, sin: tf.Tensor, rotate: tf.Tensor2D): tf.Tensor4D {
  const fused = useFused(x, cos, sin) ? fusedOps.rope(x, cos, sin) : undefined;
  if (fused) return fused;
  const [b, h, t, hd] = x.shape;
  const rotated = tf.reshape(tf.matMul(tf.reshape(x, [b * h * t, hd]) as tf.Tensor2D, rotate), [b, h, t, hd]);
  return tf.add(tf.mul(x, cos), tf.mul(rotated, sin)) as tf.Tensor4D;
}

/** Inverted dropout; identity when rate is 0 or not training. */
export function dropout(x: tf.Tensor, rate: number, seed: number | undefined): tf.Tensor {
  return rate > 0 && seed !== undefined ? tf.dropout(x, rate, undefined, seed) : x;
}
