/** Causal self-attention with grouped-query heads, RoPE, an optional KV cache and document masks. */
import * as tf from '@tensorflow/tfjs';
import { fusedOps, useFused } from '../engine/fused';
import { applyRope, dropout } from './layers';

/** Per-layer key/value cache for incremental decoding; k, v: (B, n_kv_heads, S, hd), kept outside tidy. */
export class KVCache {
  readonly layers: ({ k: tf.Tensor4D; v: tf.Tensor4D } | undefined)[];
  /**
   * Leading positions held by prefix-tuning prefixes / prompt-tuning virtual tokens, which the model
   * puts in on the first (empty-cache) call; later calls shift given `positionIds` by it.
   */
  reserved = 0;

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
    this.reserved = 0;
  }
}

/**
 * Additive attention mask (0 where allowed, -1e9 where not), (1 or B, 1, T, S).
 * Query t sits at absolute position offset + t and may see keys at positions ≤ its own; with segment ids
 * (B, T) it also sees only keys of its own segment, so packed documents do not attend across boundaries.
 * `shared` leading keys (prefix-tuning prefixes, prompt-tuning virtual tokens) belong to no segment:
 * every query may see them (causality still applies), so each packed document sees them as if alone;
 * `segmentIds` then label the S − shared keys after them.
 */
export function attentionMask(t: number, s: number, segmentIds?: tf.Tensor2D, shared = 0): tf.Tensor4D {
  const offset = s - t;
  const causal = new Float32Array(t * s);
  for (let i = 0; i < t; i++) for (let j = 0; j < s; j++) causal[i * s + j] = j <= i + offset ? 0 : -1e9;
  const mask = tf.tensor4d(causal, [1, 1, t, s]);
  if (!segmentIds) return mask;
  if (shared > 0) {
    if (segmentIds.shape[1] !== s - shared) throw new Error('segmentIds cannot be combined with a KV cache');
    // Shared keys get a placeholder id; the OR with the shared-column flags makes them visible to all.
    const keys = tf.concat([tf.zeros([segmentIds.shape[0], shared], segmentIds.dtype), segmentIds], 1) as tf.Tensor2D;
    const queries = tf.slice(keys, [0, offset], [-1, t]);
    const flags = tf.tensor3d(Array.from({ length: s }, (_, j) => (j < shared ? 1 : 0)), [1, 1, s], 'bool');
    const visible = tf.logicalOr(tf.equal(tf.expandDims(queries, 2), tf.expandDims(keys, 1)), flags); // (B, T, S)
    const segment = tf.where(visible, tf.zeros(visible.shape), tf.fill(visible.shape, -1e9));
    return tf.add(mask, tf.expandDims(segment, 1)) as tf.Tensor4D;
  }
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
  /**
   * Keys/values (B, H_kv, P, hd) put before this call's keys after RoPE (prefix tuning: learned in the
   * rotated space, as Hugging Face's past_key_values); with a cache they enter it with this call's.
   */
  prefix?: { k: tf.Tensor4D; v: tf.Tensor4D };
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
  if (a.prefix) {
    k = tf.concat([a.prefix.k, k], 2);
    v = tf.concat([a.prefix.v, v], 2);
  }
  if (cache) ({ k, v } = cache.cache.append(cache.i, k, v));
  const [b, h, t, hd] = q.shape;
  // Grouped-query attention without repeating k/v: the `groups` query heads that share a kv head are
  // stacked along the rows, (B, H, T, hd) → (B, H_kv, groups·T, hd), and the mask is repeated to match
  // (its rows are few). Copying the cached k/v per head every decoding step cost more than the attention.
  const qg = groups === 1 ? q : (tf.reshape(q, [b, h / groups, groups * t, hd]) as tf.Tensor4D);
  const mask = groups === 1 || a.mask.shape[2] === 1 ? a.mask : tf.tile(a.mask, [1, 1, groups, 1]);
  const raw = tf.matMul(qg, k, false, true);
  // Fused: softmax(scale·(q·kᵀ + mask)), the same as the composite's for a 0 / −1e9 mask (−1e9·scale is still −∞ to exp).
  const probs = dropout(
    useFused(raw, mask) ? fusedOps.softmax(tf.add(raw, mask), 1 / Math.sqrt(hd)) : tf.softmax(tf.add(tf.mul(raw, 1 / Math.sqrt(hd)), mask)),
    a.dropoutRate, a.dropoutSeed);
  const out = tf.matMul(probs as tf.Tensor4D, v) as tf.Tensor4D;
  return groups === 1 ? out : (tf.reshape(out, [b, h, t, hd]) as tf.Tensor4D);
}
