/** Text generation: greedy or sampled (temperature, top-k, top-p), seeded, with or without a KV cache. */
import * as tf from '@tensorflow/tfjs';
import { Rng } from '../util/rng';
import { withDefaults } from '../util/options';
import { requireEngine } from '../engine/backend';
import { KVCache } from './attention';
import { CausalLM } from './transformer';

/** Options of {@link generate}; defaults give greedy decoding of up to 64 tokens with a KV cache. */
export interface GenerateOptions {
  /** Most tokens to add after the prompt. */
  maxNewTokens: number;
  /** Sample from the distribution instead of taking the argmax. */
  doSample: boolean;
  /** Divides the logits before sampling; must be > 0. */
  temperature: number;
  /** Keep only the k most likely tokens (0 = off). */
  topK: number;
  /** Keep the smallest set of tokens whose probability reaches p (1 = off). */
  topP: number;
  /** Token ids that end generation; the stop token is included in the output. */
  stopTokens: number[];
  /** Seed of the sampler (same seed, same tokens). */
  seed: number;
  /** Reuse keys/values of earlier positions (gives the same tokens as recomputing). */
  useCache: boolean;
}

/** Defaults of {@link GenerateOptions} (as Hugging Face's `generate`: greedy unless `doSample`). */
export const generateDefaults: Readonly<GenerateOptions> = Object.freeze({
  maxNewTokens: 64, doSample: false, temperature: 1, topK: 0, topP: 1, stopTokens: [], seed: 0, useCache: true,
});

/** Picks the next token from one row of logits. */
export function sampleToken(logits: Float32Array, o: Pick<GenerateOptions, 'doSample' | 'temperature' | 'topK' | 'topP'>, rng: Rng): number {
  let best = 0;
  for (let i = 1; i < logits.length; i++) if (logits[i] > logits[best]) best = i;
  if (!o.doSample) return best;
  // Candidates sorted by logit, cut by top-k, then softmax with temperature, then cut by top-p.
  let order = Array.from(logits.keys()).sort((a, b) => logits[b] - logits[a] || a - b);
  if (o.topK > 0) order = order.slice(0, o.topK);
  const max = logits[order[0]];
  const weights = order.map((i) => Math.exp((logits[i] - max) / o.temperature));
  const total = weights.reduce((a, b) => a + b, 0);
  let keep = order.length;
  if (o.topP < 1) {
    let cum = 0;
    for (let j = 0; j < order.length; j++) {
      cum += weights[j] / total;
      if (cum >= o.topP) { keep = j + 1; break; }
    }
  }
  const kept = weights.slice(0, keep);
  const keptTotal = kept.reduce((a, b) => a + b, 0);
  let r = rng.next() * keptTotal;
  for (let j = 0; j < keep; j++) {
    r -= kept[j];
    if (r < 0) return order[j];
  }
  return order[keep - 1];
}

function checkOptions(o: GenerateOptions, vocabSize: number): void {
  if (!Number.isInteger(o.maxNewTokens) || o.maxNewTokens < 0) throw new Error(`generate: maxNewTokens must be a non-negative integer (got ${o.maxNewTokens})`);
  if (!(o.temperature > 0)) throw new Error(`generate: temperature must be > 0 (got ${o.temperature})`);
  if (!Number.isInteger(o.topK) || o.topK < 0) throw new Error(`generate: topK must be a non-negative integer (got ${o.topK})`);
  if (!(o.topP > 0 && o.topP <= 1)) throw new Error(`generate: topP must be in (0, 1] (got ${o.topP})`);
  for (const s of o.stopTokens) if (!Number.isInteger(s) || s < 0 || s >= vocabSize) throw new Error(`generate: stop token ${s} is not a token id (vocab ${vocabSize})`);
}

/** Logits of the last position for ids (1, T): the whole window, or just the new ids with a cache. */
function lastLogits(model: CausalLM, ids: number[], cache?: KVCache): Float32Array {
  const logits = tf.tidy(() => {
    const input = tf.tensor2d([ids], [1, ids.length], 'int32');
    const h = model.hidden(input, { cache });
    const last = tf.slice(h, [0, ids.length - 1, 0], [1, 1, -1]) as tf.Tensor3D;
    return model.head(last);
  });
  const values = logits.dataSync() as Float32Array;
  logits.dispose();
  return values;
}

/**
 * `generate()`'s loop one token per call, so callers (the HTTP server's streaming) can yield between
 * tokens. With a cache each call feeds only the new token; once the window is full it slides over the
 * last `contextLength` − P tokens without the cache, so cached output equals uncached output token for
 * token. Call {@link TokenStepper.dispose} when done (frees the KV cache).
 *
 * @example
 * const s = new TokenStepper(model, tok.encode('Hi'), { ...generateDefaults, doSample: false });
 * try { const first = s.next(); } finally { s.dispose(); }
 */
export class TokenStepper {
  private readonly tokens: number[];
  private readonly rng: Rng;
  private readonly window: number;
  private cache: KVCache | undefined;
  /** Tokens of `tokens` already in the cache. */
  private fed = 0;

  constructor(private readonly model: CausalLM, prompt: readonly number[], private readonly options: Pick<GenerateOptions, 'doSample' | 'temperature' | 'topK' | 'topP' | 'seed'> & { useCache?: boolean }) {
    const { vocabSize, contextLength } = model.config;
    if (prompt.length === 0) throw new Error('generate: prompt must contain at least one token');
    for (const t of prompt) if (!Number.isInteger(t) || t < 0 || t >= vocabSize) throw new Error(`generate: prompt token ${t} is not a token id (vocab ${vocabSize})`);
    // Room for real tokens: prefixes / virtual tokens keep the first positions (they never slide out).
    const reserved = model.reservedPositions();
    this.window = contextLength - reserved;
    if (this.window < 1) throw new Error(`generate: prefix / virtual tokens take ${reserved} positions, leaving none of contextLength ${contextLength}`);
    this.tokens = [...prompt];
    this.rng = new Rng(options.seed);
    this.cache = options.useCache === false ? undefined : new KVCache(model.config.nLayers);
  }

  /** Samples the next token and appends it to the context. */
  next(): number {
    let logits: Float32Array;
    if (this.cache && this.tokens.length <= this.window) {
      logits = lastLogits(this.model, this.tokens.slice(this.fed), this.cache);
      this.fed = this.tokens.length;
    } else {
      this.cache?.dispose();
      this.cache = undefined;
      logits = lastLogits(this.model, this.tokens.slice(-this.window));
    }
    const id = sampleToken(logits, this.options, this.rng);
    this.tokens.push(id);
    return id;
  }

  dispose(): void {
    this.cache?.dispose();
    this.cache = undefined;
  }
}

/**
 * Continues `prompt` (token ids) and returns the new tokens (see {@link TokenStepper} for the cache and
 * window rules). Prefix-tuning prefixes and prompt-tuning virtual tokens stay in front of the window and
 * shrink it by their P positions.
 *
 * @example
 * const ids = generate(model, tok.encode('Call me'), { maxNewTokens: 20, doSample: true, topP: 0.9, seed: 7 });
 */
export function generate(model: CausalLM, prompt: number[], options: Partial<GenerateOptions> = {}): number[] {
  requireEngine('generate');
  const o: GenerateOptions = withDefaults(generateDefaults, options, 'generate');
  checkOptions(o, model.config.vocabSize);
  const stepper = new TokenStepper(model, prompt, o);
  const out: number[] = [];
  try {
    for (let step = 0; step < o.maxNewTokens; step++) {
      const next = stepper.next();
      out.push(next);
      if (o.stopTokens.includes(next)) break;
    }
  } finally {
    stepper.dispose();
  }
  return out;
}
