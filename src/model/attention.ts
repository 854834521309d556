/** Causal self-attention with grouped-query heads, RoPE, an optional KV cache and document masks. */
import * as tf from '@tensorflow/tfjs';
import { applyRope, dropout } from './layers';

/** Per-layer key/value cache for incremental decoding; k, v: (B, n_kv_heads, S, hd), kept outside tidy. */
export class KVCache {
  readonly layers: ({ k: tf.Tensor4D; v: tf.Tensor4D } | undefined)[];

  constructor(nLayers: number) {
    this.layers = new Array(nLayers).fill(undefined);
  }

  /** Number of positions already cached. */
  get length(): number {
    return this.layers[0]?.k.shape[2] ?? 0;
  }

  /** Appends this step's keys/values to layer i and returns the full (B, n_kv, S, hd) tensors. */
  append(i: number, k: tf.Tensor4D, v: tf.Tensor4D): { k: tf.Tensor4D; v: tf.Tensor4D } {
    const past = this.layers[i];
    const next = past ? { k: tf.concat([past.k, k], 2), v: tf.concat([past.v, v], 2) } : { k, v };
    tf.keep(next.k);
    tf.keep(next.v);
    if (past) tf.dispose([past.k, past.v]);
    this.layers[i] = next;
    return next;
  }

  /** Frees every cached tensor. */
  dispose(): void {
    for (const l of this.layers) if (l) tf.dispose([l.k, l.v]);
    this.layers.fill(undefined);
  }
}

/** Repeats kv heads so grouped-query attention can use one batched product; stays rank 4 (rank-5 transposes are slow on wasm). */
export function repeatKv(x: tf.Tensor4D, groups: number): tf.Tensor4D {
  if (groups === 1) return x;
  const [b, hkv, s, hd] = x.shape;
  const flat = tf.reshape(x, [b, hkv, 1, s * hd]);
  return tf.reshape(tf.tile(flat, [1, 1, groups, 1]), [b, hkv * groups, s, hd]);
}

/**
 * Additive attention mask (0 where allowed, -1e9 where not), (1 or B, 1, T, S).
 * Query t sits at absolute position offset + t and may see keys at positions ≤ its own; with segment ids
 * (B, T) it also sees only keys of its own segment, so packed documents do not attend across boundaries.
 */
export function attentionMask(t: number, s: number, segmentIds?: tf.Tensor2D): tf.Tensor4D {
  const offset = s - t;
  const causal = new Float32Array(t * s);
  for (let i = 0; i < t; i++) for (let j = 0; j < s; j++) causal[i * s + j] = j <= i + offset ? 0 : -1e9;
  const mask = tf.tensor4d(causal, [1, 1, t, s]);
  if (!segmentIds) return mask;
  if (offset !== 0) throw new Error('segmentIds cannot be combined with a KV cache');
  const same = tf.equal(tf.expandDims(segmentIds, 2), tf.expandDims(segmentIds, 1)); // (B, T, T)
  const segment = tf.where(same, tf.zeros(same.shape), tf.fill(same.shape, -1e9));
  return tf.add(mask, tf.expandDims(segment, 1)) as tf.Tensor4D;
}

/** Inputs of one attention call, already projected: q (B, H, T, hd), k/v (B, H_kv, T, hd). */
export interface AttentionInputs {
  q: tf.Tensor4D;
  k: tf.Tensor4D;
  v: tf.Tensor4D;
  /** RoPE tables broadcastable to (B, H, T, hd) and the rotate-half matrix; omitted for learned positions. */
  rope?: { cos: tf.Tensor; sin: tf.Tensor; rotate: tf.Tensor2D };
  mask: tf.Tensor4D;
  dropoutRate: number;
  dropoutSeed?: number;
}

/** softmax(q·kᵀ/√hd + mask)·v → (B, H, T, hd). */
export function scaledDotProductAttention(a: AttentionInputs, groups: number, cache?: { i: number; cache: KVCache }): tf.Tensor4D {
  let { q, k, v } = a;
  if (a.rope) {
    q = applyRope(q, a.rope.cos, a.rope.sin, a.rope.rotate);
    k = applyRope(k, a.rope.cos, a.rope.sin, a.rope.rotate);
  }
  if (cache) ({ k, v } = cache.cache.append(cache.i, k, v));
  const hd = q.shape[3];
  const scores = tf.add(tf.mul(tf.matMul(q, repeatKv(k, groups), false, true), 1 / Math.sqrt(hd)), a.mask);
  const probs = dropout(tf.softmax(scores), a.dropoutRate, a.dropoutSeed);
  return tf.matMul(probs as tf.Tensor4D, repeatKv(v, groups));
}
