/**
 * What a task asks of a model, as lm-eval's request types: the log-likelihood of a continuation after a
 * context (and whether greedy decoding would produce it), the rolling log-likelihood of a whole text,
 * and a greedy continuation. Synchronous (weights must not change mid-measurement when a tracker runs
 * inside a trainer's step event) and batched; token log-probs come from `rlhf/logprobs`.
 */
import * as tf from '@tensorflow/tfjs';
import { generate } from '../../model/generate';
import type { CausalLM } from '../../model/transformer';
import { tokenLogProbs } from '../../rlhf/logprobs';
import type { Tokenizer } from '../../tokenizer/tokenizer';
import { withDefaults } from '../../util/options';

/** Options of the requests. */
export interface RequestOptions {
  /** Rows per forward pass. */
  batchSize: number;
  /**
   * Token put before every context (and before a rolling text): `eos`, as tunelab's token streams put it
   * between documents, so a prompt starts where training documents start (lm-eval's rolling windows
   * start with the end-of-text token the same way); `bos`; or `none`.
   */
  prefix: 'eos' | 'bos' | 'none';
}

/** Defaults of {@link RequestOptions}. Frozen: override by spreading. */
export const requestDefaults: Readonly<RequestOptions> = Object.freeze({ batchSize: 16, prefix: 'eos' as const });

/** Log-likelihood of one continuation. */
export interface Loglikelihood {
  /** Σ log p(continuation token | everything before it). */
  ll: number;
  /** Every continuation token is the argmax at its position (lm-eval's `is_greedy`). */
  isGreedy: boolean;
  /** Continuation tokens scored. */
  tokens: number;
}

/** One scored row: inputs, targets, and the positions that count. */
interface Row {
  inputs: number[];
  targets: number[];
  /** Positions [from, inputs.length) count. */
  from: number;
}

function prefixIds(tok: Tokenizer, prefix: RequestOptions['prefix']): number[] {
  if (!['eos', 'bos', 'none'].includes(prefix)) throw new Error(`task requests: prefix must be "eos", "bos" or "none" (got ${JSON.stringify(prefix)})`);
  if (prefix === 'none') return [];
  const s = tok.specialTokens[prefix];
  if (!s) throw new Error(`task requests: prefix "${prefix}" needs a tokenizer with a ${prefix} token (${tok.source} has none); use prefix: 'none'`);
  return [s.id];
}

/** Room for inputs: the context window less positions prefix / prompt tuning keep. */
function windowOf(model: CausalLM): number {
  return model.config.contextLength - model.reservedPositions();
}

/**
 * lm-eval's `_encode_pair`: trailing spaces of the context move to the continuation, the pair is encoded
 * together and the continuation's tokens are what follows the context's own encoding.
 */
export function encodePair(tok: Tokenizer, context: string, continuation: string): { context: number[]; continuation: number[] } {
  const spaces = context.length - context.trimEnd().length;
  const [ctx, cont] = spaces > 0 ? [context.slice(0, -spaces), context.slice(-spaces) + continuation] : [context, continuation];
  const whole = tok.encode(ctx + cont);
  const ctxIds = tok.encode(ctx);
  const same = ctxIds.every((id, i) => whole[i] === id);
  // BPE may merge across the boundary; then the context's tokens are not a prefix: encode separately.
  return same ? { context: ctxIds, continuation: whole.slice(ctxIds.length) } : { context: ctxIds, continuation: tok.encode(cont) };
}

/** Sums of masked token log-probs and greedy hits of rows, in batches (rows are right-padded). */
function scoreRows(model: CausalLM, rows: readonly Row[], batchSize: number, padId: number): { ll: number; greedy: boolean; tokens: number }[] {
  const out: { ll: number; greedy: boolean; tokens: number }[] = new Array(rows.length);
  // Longest first, so each batch pads little (lm-eval sorts the same way); results go back to their index.
  if (!Number.isInteger(batchSize) || batchSize < 1) throw new Error(`task requests: batchSize must be a positive integer (got ${batchSize})`);
  const order = rows.map((_, i) => i).sort((a, b) => rows[b].inputs.length - rows[a].inputs.length);
  for (let s = 0; s < order.length; s += batchSize) {
    const idx = order.slice(s, s + batchSize);
    const T = rows[idx[0]].inputs.length;
    const B = idx.length;
    const inputs = new Int32Array(B * T).fill(padId);
    const targets = new Int32Array(B * T).fill(padId);
    const mask = new Float32Array(B * T);
    idx.forEach((r, b) => {
      const row = rows[r];
      row.inputs.forEach((id, t) => (inputs[b * T + t] = id));
      row.targets.forEach((id, t) => (targets[b * T + t] = id));
      for (let t = row.from; t < row.inputs.length; t++) mask[b * T + t] = 1;
    });
    const [sum, hits, count] = tf.tidy(() => {
      const x = tf.tensor2d(inputs, [B, T], 'int32');
      const y = tf.tensor2d(targets, [B, T], 'int32');
      const m = tf.tensor2d(mask, [B, T]);
      const logits = model.forward(x, { training: false }); // (B, T, V)
      const lp = tokenLogProbs(logits, y); // (B, T)
      const hit = tf.cast(tf.equal(tf.argMax(logits, -1), y), 'float32'); // ties → lowest id, as greedy generate
      return [tf.sum(tf.mul(lp, m), -1), tf.sum(tf.mul(hit, m), -1), tf.sum(m, -1)];
    });
    const [sv, hv, cv] = [sum.dataSync(), hits.dataSync(), count.dataSync()];
    tf.dispose([sum, hits, count]);
    idx.forEach((r, b) => (out[r] = { ll: sv[b], greedy: Math.round(hv[b]) === Math.round(cv[b]), tokens: Math.round(cv[b]) }));
  }
  return out;
}

/**
 * log p(continuation | context) for each pair, with lm-eval's truncation: the last `window + 1` tokens of
 * context + continuation are kept (the context loses its start). `where(i)` names request i in errors.
 *
 * @example
 * loglikelihoods(model, tok, [{ context: 'The whale', continuation: ' swam' }])[0].ll; // < 0
 */
export function loglikelihoods(model: CausalLM, tok: Tokenizer, requests: readonly { context: string; continuation: string }[],
  options: Partial<RequestOptions> = {}, where: (i: number) => string = (i) => `task requests: request ${i}`): Loglikelihood[] {
  const o = withDefaults(requestDefaults, options, 'loglikelihoods');
  const window = windowOf(model);
  const prefix = prefixIds(tok, o.prefix);
  const rows = requests.map((r, i): Row => {
    const pair = encodePair(tok, r.context, r.continuation);
    if (pair.continuation.length === 0) throw new Error(`${where(i)}: the continuation ${JSON.stringify(r.continuation)} encodes to no tokens`);
    if (pair.continuation.length > window) throw new Error(`${where(i)}: the continuation has ${pair.continuation.length} tokens, more than the model's window of ${window}`);
    const all = [...prefix, ...pair.context, ...pair.continuation];
    if (all.length < 2) throw new Error(`${where(i)}: an empty context needs a prefix token (prefix is "none")`);
    const kept = all.slice(-(window + 1));
    return { inputs: kept.slice(0, -1), targets: kept.slice(1), from: kept.length - 1 - pair.continuation.length };
  });
  const pad = tok.specialTokens.pad?.id ?? prefix[0] ?? 0;
  return scoreRows(model, rows, o.batchSize, pad).map((r) => ({ ll: r.ll, isGreedy: r.greedy, tokens: r.tokens }));
}

/**
 * Log-likelihood of each whole text, every token scored once: the prefix token, then disjoint windows
 * (each window's first input is the previous window's last token), lm-eval's `loglikelihood_rolling`.
 *
 * @example
 * rollingLoglikelihoods(model, tok, ['Call me Ishmael.'])[0].ll;
 */
export function rollingLoglikelihoods(model: CausalLM, tok: Tokenizer, texts: readonly string[], options: Partial<RequestOptions> = {},
  where: (i: number) => string = (i) => `task requests: text ${i}`): { ll: number; tokens: number }[] {
  const o = withDefaults(requestDefaults, options, 'rollingLoglikelihoods');
  const window = windowOf(model);
  const prefix = prefixIds(tok, o.prefix);
  const rows: Row[] = [];
  const owner: number[] = [];
  texts.forEach((text, i) => {
    const ids = [...prefix, ...tok.encode(text)];
    if (ids.length < 2) throw new Error(`${where(i)}: ${prefix.length ? 'the text is empty' : 'the text needs at least two tokens without a prefix token'}`);
    for (let s = 0; s < ids.length - 1; s += window) {
      const piece = ids.slice(s, s + window + 1);
      rows.push({ inputs: piece.slice(0, -1), targets: piece.slice(1), from: 0 });
      owner.push(i);
    }
  });
  const pad = tok.specialTokens.pad?.id ?? prefix[0] ?? 0;
  const out = texts.map(() => ({ ll: 0, tokens: 0 }));
  scoreRows(model, rows, o.batchSize, pad).forEach((r, j) => {
    out[owner[j]].ll += r.ll;
    out[owner[j]].tokens += r.tokens;
  });
  return out;
}

/**
 * Greedy continuation of each prompt (after the prefix token), cut before the first `until` string, stopping
 * at eos / `<|im_end|>` or after `maxNewTokens`.
 *
 * @example
 * greedyUntil(model, tok, ['Q: 2+2?\nA:'], { until: ['\n'], maxNewTokens: 8 });
 */
export function greedyUntil(model: CausalLM, tok: Tokenizer, prompts: readonly string[],
  options: Partial<Pick<RequestOptions, 'prefix'>> & { until: readonly string[]; maxNewTokens: number }): string[] {
  const prefix = prefixIds(tok, options.prefix ?? requestDefaults.prefix);
  const stops = [tok.specialTokens.eos?.id, tok.specialTokens.imEnd?.id].filter((x): x is number => x !== undefined);
  return prompts.map((p) => {
    const ids = [...prefix, ...tok.encode(p)];
    if (ids.length === 0) throw new Error('task requests: an empty prompt needs a prefix token (prefix is "none")');
    const out = generate(model, ids, { maxNewTokens: options.maxNewTokens, doSample: false, stopTokens: stops });
    const text = tok.decode(out.length > 0 && stops.includes(out[out.length - 1]) ? out.slice(0, -1) : out, { skipSpecialTokens: true });
    const cut = Math.min(...options.until.map((u) => text.indexOf(u)).filter((k) => k >= 0), text.length);
    return text.slice(0, cut);
  });
}
