/**
 * Evaluation metrics of a causal LM: held-out loss/perplexity (token-weighted, completion-only for SFT
 * examples through their loss masks), next-token accuracy over masked positions, exact match and
 * contains-answer for question→answer sets (greedy, seeded), and generation samples for fixed prompts.
 *
 * Loss and perplexity reuse {@link evaluateLm} over {@link evalWindows} (token streams) or
 * {@link evalBatches} (tokenized examples); nothing here re-implements the objective.
 */
import * as tf from '@tensorflow/tfjs';
import { batchDefaults, evalBatches, type BatchTokens, type ExampleLike } from '../data/batches';
import { chatmlTemplate, type ChatTemplate } from '../data/chat';
import { generate } from '../model/generate';
import type { CausalLM } from '../model/transformer';
import type { Tokenizer } from '../tokenizer/tokenizer';
import { causalLmObjective, evalWindows, evaluateLm, type LmBatch } from '../train/causal-lm';
import { withDefaults } from '../util/options';

/**
 * A held-out set: a token stream (cut into non-overlapping windows, every position counted) or
 * tokenized examples (padded, only positions their loss masks select are counted).
 */
export type HeldOut = { readonly tokens: ArrayLike<number> } | { readonly examples: readonly ExampleLike[] };

/** Options of the held-out metrics ({@link heldOutLoss}, {@link tokenAccuracy}). */
export interface HeldOutOptions {
  /** Window length for token streams and the longest piece for examples. */
  seqLen: number;
  /** Rows per forward pass. */
  batchSize: number;
  /** Pad and eos ids for examples (a {@link Tokenizer} works); required only for `examples` sets. */
  tokens?: Tokenizer | BatchTokens;
}

/**
 * Defaults of {@link HeldOutOptions}. Frozen: override by spreading.
 *
 * @example
 * const o: HeldOutOptions = { ...heldOutDefaults, seqLen: 128, tokens: tok };
 */
export const heldOutDefaults: Readonly<HeldOutOptions> = Object.freeze({ seqLen: 64, batchSize: 16 });

/** Loss, perplexity = exp(loss) and the number of counted target tokens. */
export interface LossResult {
  loss: number;
  perplexity: number;
  tokens: number;
}

/**
 * Fresh evaluation batches of a held-out set (each call is a new pass).
 *
 * @example
 * for (const b of heldOutBatches({ tokens: ids }, { ...heldOutDefaults, seqLen: 32 })) causalLmObjective.dispose(b);
 */
export function heldOutBatches(set: HeldOut, options: Partial<HeldOutOptions> = {}): Iterable<LmBatch> {
  const o: HeldOutOptions = withDefaults(heldOutDefaults, options, 'heldOut', ['tokens']);
  if ('tokens' in set) return evalWindows(set.tokens, o.seqLen, o.batchSize, 'held-out tokens');
  if (!o.tokens) throw new Error('heldOutBatches: examples need `tokens` (a Tokenizer or {pad, eos}) for padding');
  return evalBatches(set.examples, o.tokens, { ...batchDefaults, packing: false, seqLen: o.seqLen, batchSize: o.batchSize });
}

/**
 * Token-weighted mean loss and perplexity of a model on a held-out set (completion-only for examples).
 *
 * @example
 * const { loss, perplexity } = await heldOutLoss(model, { tokens: tokenStream(tok, docs) }, { seqLen: 64 });
 * const sft = await heldOutLoss(model, { examples }, { seqLen: 128, tokens: tok });
 */
export async function heldOutLoss(model: CausalLM, set: HeldOut, options: Partial<HeldOutOptions> = {}): Promise<LossResult> {
  return evaluateLm(model, heldOutBatches(set, options));
}

/**
 * The same as {@link heldOutLoss}, synchronously (for use inside synchronous trainer event listeners,
 * where an awaited evaluation would interleave with the next optimizer step). Uses the same objective.
 *
 * @example
 * trainer.on('step', (m) => console.log(m.step, heldOutLossSync(model, { tokens: ids }).loss));
 */
export function heldOutLossSync(model: CausalLM, set: HeldOut, options: Partial<HeldOutOptions> = {}): LossResult {
  let sum = 0;
  let count = 0;
  for (const batch of heldOutBatches(set, options)) {
    const [loss, mask] = tf.tidy(() => [causalLmObjective.loss(model, batch, { training: false, seed: 0 }), tf.sum(batch.lossMask)]);
    const n = mask.dataSync()[0];
    sum += loss.dataSync()[0] * n;
    count += n;
    tf.dispose([loss, mask]);
    causalLmObjective.dispose(batch);
  }
  const loss = count > 0 ? sum / count : NaN;
  return { loss, perplexity: Math.exp(loss), tokens: count };
}

/** Correct argmax predictions over the counted positions. */
export interface AccuracyResult {
  /** correct / total (NaN when no position is counted). */
  accuracy: number;
  correct: number;
  total: number;
}

/**
 * Argmax next-token accuracy of logits (B, T, V) against targets (B, T) over positions where the
 * mask (B, T) is 1. Ties go to the lowest id (as greedy {@link generate}).
 *
 * @example
 * maskedTokenAccuracy(logits, targets, lossMask); // { accuracy: 0.5, correct: 2, total: 4 }
 */
export function maskedTokenAccuracy(logits: tf.Tensor3D, targets: tf.Tensor2D, mask: tf.Tensor2D): AccuracyResult {
  const [hit, tot] = tf.tidy(() => {
    const pred = tf.argMax(logits, -1);
    const same = tf.cast(tf.equal(pred, tf.cast(targets, 'int32')), 'float32');
    const m = tf.cast(mask, 'float32');
    return [tf.sum(tf.mul(same, m)), tf.sum(m)];
  });
  const correct = Math.round(hit.dataSync()[0]);
  const total = Math.round(tot.dataSync()[0]);
  tf.dispose([hit, tot]);
  return { accuracy: total > 0 ? correct / total : NaN, correct, total };
}

/**
 * Argmax next-token accuracy of a model over a held-out set's counted positions (completion-only for
 * examples).
 *
 * @example
 * const { accuracy } = tokenAccuracy(model, { examples }, { seqLen: 128, tokens: tok });
 */
export function tokenAccuracy(model: CausalLM, set: HeldOut, options: Partial<HeldOutOptions> = {}): AccuracyResult {
  let correct = 0;
  let total = 0;
  for (const batch of heldOutBatches(set, options)) {
    const logits = tf.tidy(() => model.forward(batch.inputIds, { training: false, segmentIds: batch.segmentIds, positionIds: batch.positionIds }));
    const r = maskedTokenAccuracy(logits, batch.targets, batch.lossMask);
    logits.dispose();
    causalLmObjective.dispose(batch);
    correct += r.correct;
    total += r.total;
  }
  return { accuracy: total > 0 ? correct / total : NaN, correct, total };
}

/** Options of greedy generation for {@link answerMetrics} and {@link generationSamples}. */
export interface GenerationEvalOptions {
  /** Most new tokens per prompt. */
  maxNewTokens: number;
  /** Seed passed to `generate` (greedy decoding does not use it; kept for reproducible records). */
  seed: number;
  /** Text given to the model for a question/prompt (default: the text itself). */
  format: (prompt: string) => string;
  /** Extra stop token ids, besides eos and `<|im_end|>` (when the tokenizer has them). */
  stopTokens: readonly number[];
}

/**
 * Defaults of {@link GenerationEvalOptions}. Frozen: override by spreading.
 *
 * @example
 * const o: GenerationEvalOptions = { ...generationEvalDefaults, maxNewTokens: 16, format: (q) => `Q: ${q}\nA:` };
 */
export const generationEvalDefaults: Readonly<GenerationEvalOptions> = Object.freeze({
  maxNewTokens: 32,
  seed: 0,
  format: (prompt: string) => prompt,
  stopTokens: Object.freeze([] as number[]),
});

/**
 * A `format` for chat models: the question as one user turn (after an optional system turn), rendered by
 * a chat template with the assistant header appended, so the model answers as the assistant and stops
 * at its end-of-turn token.
 *
 * @example
 * answerMetrics(model, tok, pairs, { format: chatPrompt() }); // '<|im_start|>user\nQ<|im_end|>\n<|im_start|>assistant\n'
 */
export function chatPrompt(template: ChatTemplate = chatmlTemplate, system?: string): (question: string) => string {
  return (question) => template.render([
    ...(system === undefined ? [] : [{ role: 'system' as const, content: system }]),
    { role: 'user' as const, content: question },
  ], { addGenerationPrompt: true }).text;
}

/**
 * Lower case, whitespace runs collapsed to one space, trimmed.
 *
 * @example
 * normalizeAnswer('  Paris\n is ') // 'paris is'
 */
export function normalizeAnswer(text: string): string {
  return text.toLowerCase().replace(/\s+/g, ' ').trim();
}

function stopIds(tok: Tokenizer, extra: readonly number[]): number[] {
  const ids = [...extra];
  for (const s of [tok.specialTokens.eos, tok.specialTokens.imEnd]) if (s && !ids.includes(s.id)) ids.push(s.id);
  return ids;
}

/** Greedy completion of one prompt, stop token removed, special tokens skipped. */
function complete(model: CausalLM, tok: Tokenizer, prompt: string, o: GenerationEvalOptions): { text: string; tokens: number } {
  const stops = stopIds(tok, o.stopTokens);
  const out = generate(model, tok.encode(o.format(prompt)), { maxNewTokens: o.maxNewTokens, doSample: false, seed: o.seed, stopTokens: stops });
  const kept = out.length > 0 && stops.includes(out[out.length - 1]) ? out.slice(0, -1) : out;
  return { text: tok.decode(kept, { skipSpecialTokens: true }), tokens: kept.length };
}

/** A question with its reference answer. */
export interface QaPair {
  question: string;
  answer: string;
}

/** One question's outcome in {@link answerMetrics}. */
export interface QaRow extends QaPair {
  prediction: string;
  /** Normalised prediction equals normalised answer. */
  exact: boolean;
  /** Normalised prediction contains normalised answer. */
  contains: boolean;
}

/**
 * Exact match and contains-answer rates of greedy completions of questions (normalised: case and
 * whitespace), with one row per question.
 *
 * @example
 * const r = answerMetrics(model, tok, [{ question: 'Capital of France?', answer: 'Paris' }], { maxNewTokens: 8 });
 * r.exactMatch; // 0..1
 */
export function answerMetrics(model: CausalLM, tok: Tokenizer, pairs: readonly QaPair[], options: Partial<GenerationEvalOptions> = {}): { exactMatch: number; containsAnswer: number; rows: QaRow[] } {
  const o: GenerationEvalOptions = withDefaults(generationEvalDefaults, options, 'answerMetrics');
  const rows = pairs.map((p): QaRow => {
    const prediction = complete(model, tok, p.question, o).text;
    const pred = normalizeAnswer(prediction);
    const ans = normalizeAnswer(p.answer);
    return { question: p.question, answer: p.answer, prediction, exact: pred === ans, contains: ans.length > 0 ? pred.includes(ans) : pred.length === 0 };
  });
  const rate = (f: (r: QaRow) => boolean) => (rows.length ? rows.filter(f).length / rows.length : NaN);
  return { exactMatch: rate((r) => r.exact), containsAnswer: rate((r) => r.contains), rows };
}

/** One prompt's greedy completion. */
export interface SampleRow {
  prompt: string;
  completion: string;
  /** New tokens generated (stop token excluded). */
  tokens: number;
}

/**
 * Greedy, seeded completions of a fixed prompt list as rows (e.g. for `aq.from(rows)` or a table view),
 * to compare checkpoints on the same prompts.
 *
 * @example
 * const rows = generationSamples(model, tok, ['Call me', 'The whale'], { maxNewTokens: 20 });
 */
export function generationSamples(model: CausalLM, tok: Tokenizer, prompts: readonly string[], options: Partial<GenerationEvalOptions> = {}): SampleRow[] {
  const o: GenerationEvalOptions = withDefaults(generationEvalDefaults, options, 'generate');
  return prompts.map((prompt) => {
    const c = complete(model, tok, prompt, o);
    return { prompt, completion: c.text, tokens: c.tokens };
  });
}
