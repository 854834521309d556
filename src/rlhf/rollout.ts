/**
 * PPO rollouts: responses sampled with the KV cache, with the log-probs (of logits / temperature) and
 * values seen while sampling, and the same log-probs recomputed by a full forward pass of packed rows.
 */
import * as tf from '@tensorflow/tfjs';
import { KVCache } from '../model/attention';
import { sampleToken } from '../model/generate';
import type { CausalLM } from '../model/transformer';
import { Rng } from '../util/rng';
import type { ScalarHead } from './heads';
import { tokenLogProbs } from './logprobs';

/** Sampled responses with the log-probs (of logits / temperature) and values seen while sampling. */
export interface SampledResponses {
  responseIds: number[][];
  logprobs: number[][];
  /** V(s_t) before each response token; empty rows without a value head. */
  values: number[][];
}

/** log softmax(logits / temperature)[token] from one row of logits. */
function logProbOf(logits: Float32Array, token: number, temperature: number): number {
  let max = -Infinity;
  for (let i = 0; i < logits.length; i++) if (logits[i] > max) max = logits[i];
  let total = 0;
  for (let i = 0; i < logits.length; i++) total += Math.exp((logits[i] - max) / temperature);
  return (logits[token] - max) / temperature - Math.log(total);
}

/**
 * Samples a response per prompt with the KV cache, batching prompts of equal token length (the model has
 * no padding mask, so only equal lengths share a batch exactly). Each row has its own seeded sampler, so
 * tokens do not depend on how rows are grouped. Log-probs and values come from the cached pass itself.
 *
 * @example
 * const r = sampleResponses(model, [tok.encode('The nation')], { maxNewTokens: 8, temperature: 0.7, seeds: [1] });
 */
export function sampleResponses(
  model: CausalLM, prompts: readonly number[][],
  o: { maxNewTokens: number; temperature: number; topK?: number; topP?: number; stopTokenId?: number | null; seeds: readonly number[]; valueHead?: ScalarHead },
): SampledResponses {
  const n = prompts.length;
  const out: SampledResponses = { responseIds: prompts.map(() => []), logprobs: prompts.map(() => []), values: prompts.map(() => []) };
  const groups = new Map<number, number[]>();
  const window = model.config.contextLength - model.reservedPositions();
  prompts.forEach((p, i) => {
    if (p.length === 0) throw new Error(`sampleResponses: prompt ${i} has no tokens`);
    if (p.length + o.maxNewTokens > window) {
      throw new Error(`sampleResponses: prompt ${i} (${p.length} tokens) + ${o.maxNewTokens} new tokens exceed the context`);
    }
    groups.set(p.length, [...(groups.get(p.length) ?? []), i]);
  });
  if (o.seeds.length !== n) throw new Error(`sampleResponses: ${n} prompts but ${o.seeds.length} seeds`);
  const sampling = { doSample: true, temperature: o.temperature, topK: o.topK ?? 0, topP: o.topP ?? 1 };
  const vocab = model.config.vocabSize;
  for (const rows of groups.values()) {
    const rngs = rows.map((i) => new Rng(o.seeds[i]));
    const done = rows.map(() => false);
    const cache = new KVCache(model.config.nLayers);
    try {
      let feed = rows.map((i) => prompts[i]);
      for (let step = 0; step < o.maxNewTokens && done.includes(false); step++) {
        const t = feed[0].length;
        const [logits, values] = tf.tidy(() => {
          const h = model.hidden(tf.tensor2d(feed, [rows.length, t], 'int32'), { cache });
          const last = tf.slice(h, [0, t - 1, 0], [-1, 1, -1]) as tf.Tensor3D;
          return [model.head(last), o.valueHead ? o.valueHead.apply(last) : tf.zeros([rows.length, 1])];
        });
        const l = logits.dataSync() as Float32Array;
        const v = values.dataSync();
        tf.dispose([logits, values]);
        const next = rows.map((i, r) => {
          const row = l.subarray(r * vocab, (r + 1) * vocab);
          const tok = sampleToken(row, sampling, rngs[r]);
          if (!done[r]) {
            out.responseIds[i].push(tok);
            out.logprobs[i].push(logProbOf(row, tok, o.temperature));
            if (o.valueHead) out.values[i].push(v[r]);
            if (tok === o.stopTokenId) done[r] = true;
          }
          return [tok]; // finished rows keep decoding (discarded): the batch must stay rectangular
        });
        feed = next;
      }
    } finally {
      cache.dispose();
    }
  }
  return out;
}

/** Right-padded full sequences and the (B, T) mask of positions whose next token is a response token. */
export interface PackedBatch {
  ids: tf.Tensor2D;
  targets: tf.Tensor2D;
  mask: tf.Tensor2D;
  /** Flat index (b·T + t) of each response token, row by row, for scattering per-token arrays. */
  slots: number[][];
  width: number;
}

export function pack(prompts: readonly number[][], responses: readonly number[][]): PackedBatch {
  const b = prompts.length;
  const width = Math.max(...prompts.map((p, i) => p.length + responses[i].length));
  const ids = new Int32Array(b * width);
  const targets = new Int32Array(b * width);
  const mask = new Float32Array(b * width);
  const slots = prompts.map((p, i) => {
    const seq = [...p, ...responses[i]];
    seq.forEach((tok, t) => {
      ids[i * width + t] = tok;
      if (t > 0) targets[i * width + t - 1] = tok;
    });
    // Position t predicts token t+1: response token j is predicted at p.length − 1 + j.
    return responses[i].map((_, j) => {
      const at = i * width + p.length - 1 + j;
      mask[at] = 1;
      return at;
    });
  });
  return { ids: tf.tensor2d(ids, [b, width], 'int32'), targets: tf.tensor2d(targets, [b, width], 'int32'), mask: tf.tensor2d(mask, [b, width]), slots, width };
}

/** Per-token numbers of each row scattered into a dense (B, T) tensor at the packed slots. */
export function scatter(p: PackedBatch, rows: readonly number[][]): tf.Tensor2D {
  const dense = new Float32Array(p.slots.length * p.width);
  p.slots.forEach((s, i) => s.forEach((at, j) => (dense[at] = rows[i][j])));
  return tf.tensor2d(dense, [p.slots.length, p.width]);
}

/** Per-row arrays gathered back from a dense (B, T) array. */
export function gatherRows(p: PackedBatch, dense: ArrayLike<number>): number[][] {
  return p.slots.map((s) => s.map((at) => dense[at]));
}

/**
 * Log-probs (of logits / temperature) of each response token under `model` by one full forward pass:
 * what the reference model gives, and what the cached rollout log-probs must equal.
 */
export function responseLogProbs(model: CausalLM, prompts: readonly number[][], responses: readonly number[][], temperature: number): number[][] {
  const p = pack(prompts, responses);
  const lp = tf.tidy(() => tokenLogProbs(tf.div(model.forward(p.ids), temperature) as tf.Tensor3D, p.targets));
  const rows = gatherRows(p, lp.dataSync());
  tf.dispose([lp, p.ids, p.targets, p.mask]);
  return rows;
}
