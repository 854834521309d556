/**
 * ROUGE-L (Lin 2004, "ROUGE: A Package for Automatic Evaluation of Summaries"): the longest common
 * subsequence of two token lists as precision, recall and F1. Tokens as Google's `rouge_score` makes them
 * without a stemmer: lower-cased, every run of characters other than a–z and 0–9 a separator; so scores equal
 * `RougeScorer(['rougeL']).score(reference, candidate)` for ASCII text. Self-instruct uses it as its
 * novelty filter (an instruction with ROUGE-L F1 > 0.7 to one already in the pool is dropped).
 */

/** Precision, recall and F1 (β = 1) of the longest common subsequence. */
export interface RougeScore {
  precision: number;
  recall: number;
  f1: number;
}

/**
 * `rouge_score`'s default tokenization (no stemming): lower case, non-alphanumerics split.
 *
 * @example
 * rougeTokens("Don't stop-me now!");   // ['don', 't', 'stop', 'me', 'now']
 */
export function rougeTokens(text: string): string[] {
  return text.toLowerCase().replace(/[^a-z0-9]+/g, ' ').trim().split(' ').filter(Boolean);
}

/**
 * Length of the longest common subsequence of two token lists (dynamic programming, O(n·m) time, O(m) memory).
 *
 * @example
 * lcsLength(['a', 'b', 'c', 'd'], ['a', 'c', 'd', 'b']);   // 3
 */
export function lcsLength(a: readonly string[], b: readonly string[]): number {
  let prev = new Uint32Array(b.length + 1);
  let cur = new Uint32Array(b.length + 1);
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) cur[j] = a[i - 1] === b[j - 1] ? prev[j - 1] + 1 : Math.max(prev[j], cur[j - 1]);
    [prev, cur] = [cur, prev];
  }
  return prev[b.length];
}

/**
 * ROUGE-L of a candidate against a reference (0 for an empty side).
 *
 * @example
 * rougeL('the cat sat on the mat', 'the cat lay on the mat').f1;   // 5/6
 */
export function rougeL(candidate: string, reference: string): RougeScore {
  return rougeLTokens(rougeTokens(candidate), rougeTokens(reference));
}

/**
 * ROUGE-L of already tokenized texts ({@link rougeTokens}), for scoring one candidate against many
 * references without tokenizing each again.
 *
 * @example
 * rougeLTokens(rougeTokens('the cat sat'), rougeTokens('the cat lay')).f1;   // 2/3
 */
export function rougeLTokens(c: readonly string[], r: readonly string[]): RougeScore {
  const lcs = lcsLength(c, r);
  if (lcs === 0) return { precision: 0, recall: 0, f1: 0 };
  const precision = lcs / c.length;
  const recall = lcs / r.length;
  return { precision, recall, f1: (2 * precision * recall) / (precision + recall) };
}
