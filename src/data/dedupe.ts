/**
 * Duplicate detection for corpus hygiene: exact duplicates after normalisation, and near duplicates by
 * MinHash signatures over character or word shingles with LSH banding (Broder 1997, "On the resemblance and
 * containment of documents"; banding as in Leskovec et al., Mining of Massive Datasets, ch. 3).
 *
 * LSH only proposes candidate pairs; each candidate is confirmed with the exact Jaccard similarity of the two
 * shingle sets, so the result does not depend on estimation noise. Everything is seeded and deterministic.
 */
import { Rng } from '../util/rng';

/** How texts are normalised before comparing them. */
export interface NormalizeOptions {
  /** Collapse runs of whitespace to one space and trim (default true). */
  ignoreWhitespace?: boolean;
  /** Compare case-insensitively (default false for exact dedupe, true for near dedupe). */
  ignoreCase?: boolean;
}

/**
 * The text as compared by the dedupe functions.
 *
 * @example
 * normalizeText('  Hello\n  World ', { ignoreCase: true });   // 'hello world'
 */
export function normalizeText(text: string, options: NormalizeOptions = {}): string {
  let s = options.ignoreWhitespace ?? true ? text.replace(/\s+/g, ' ').trim() : text;
  if (options.ignoreCase) s = s.toLowerCase();
  return s;
}

/**
 * Indices of texts that repeat an earlier one after normalisation, each mapped to the index it repeats
 * (`duplicateOf[i] === -1` for first occurrences).
 *
 * @example
 * exactDuplicates(['a b', 'a  b', 'c']).duplicateOf;   // [-1, 0, -1]
 */
export function exactDuplicates(texts: readonly string[], options: NormalizeOptions = {}): { duplicateOf: number[] } {
  const first = new Map<string, number>();
  const duplicateOf = texts.map((t, i) => {
    const key = normalizeText(t, options);
    const seen = first.get(key);
    if (seen !== undefined) return seen;
    first.set(key, i);
    return -1;
  });
  return { duplicateOf };
}

/** Options of {@link nearDuplicates}. */
export interface NearDedupeOptions {
  /** Jaccard similarity of shingle sets at or above which a later text counts as a copy (default 0.8). */
  threshold?: number;
  /** Shingle unit: `'char'` (default; works for short and long texts) or `'word'`. */
  shingle?: 'char' | 'word';
  /** Shingle length in units (default 5 characters or 3 words). */
  n?: number;
  /** MinHash permutations (signature length; default 128). */
  numPerm?: number;
  /** LSH bands; rows per band = floor(numPerm / bands). Default: chosen from threshold (see {@link lshParams}). */
  bands?: number;
  /** Seed of the hash family (default 0). */
  seed?: number;
  /** Lower-case before shingling (default true); whitespace is always collapsed. */
  ignoreCase?: boolean;
}

/** What {@link nearDuplicates} found. */
export interface NearDuplicates {
  /** For each text, the index of the earlier kept text it nearly copies, or -1 when it is kept. */
  duplicateOf: number[];
  /** For each removed text, its Jaccard similarity with that kept text (0 for kept ones). */
  similarity: number[];
  /** The banding used. */
  bands: number;
  rows: number;
  /** Exact Jaccard comparisons made: the LSH candidates (a measure of how well the banding filters). */
  comparisons: number;
}

/**
 * Finds near-duplicate texts. Texts are visited in order; a text is removed when it is at least `threshold`
 * similar to an earlier kept text, otherwise it is kept and indexed. So the first of a group of copies
 * survives, and a kept text is never removed later.
 *
 * @example
 * nearDuplicates(['the cat sat on the mat today', 'the cat sat on the mat today!', 'dogs bark']).duplicateOf;
 * // [-1, 0, -1]
 */
export function nearDuplicates(texts: readonly string[], options: NearDedupeOptions = {}): NearDuplicates {
  const threshold = options.threshold ?? 0.8;
  if (!(threshold > 0 && threshold <= 1)) throw new Error(`threshold must be in (0, 1] (got ${threshold})`);
  const numPerm = options.numPerm ?? 128;
  const { bands, rows } = options.bands !== undefined ? { bands: options.bands, rows: Math.floor(numPerm / options.bands) } : lshParams(threshold, numPerm);
  if (!(bands >= 1 && rows >= 1)) throw new Error(`bands must be in [1, numPerm] (got ${options.bands} with numPerm ${numPerm})`);
  const family = hashFamily(numPerm, options.seed ?? 0);
  const buckets: Map<number, number[]>[] = Array.from({ length: bands }, () => new Map());
  const sets: Uint32Array[] = [];
  const duplicateOf: number[] = [];
  const similarity: number[] = [];
  let comparisons = 0;

  texts.forEach((text, i) => {
    const set = shingleHashes(text, options);
    sets.push(set);
    const sig = minhash(set, family);
    const keys = Array.from({ length: bands }, (_, b) => bandKey(sig, b * rows, rows));
    const candidates = new Set<number>();
    keys.forEach((key, b) => buckets[b].get(key)?.forEach((j) => candidates.add(j)));
    let best = -1;
    let bestSim = 0;
    for (const j of [...candidates].sort((a, c) => a - c)) {
      comparisons++;
      const s = jaccard(set, sets[j]);
      if (s >= threshold && s > bestSim) [best, bestSim] = [j, s];
    }
    duplicateOf.push(best);
    similarity.push(best >= 0 ? bestSim : 0);
    if (best < 0) {
      keys.forEach((key, b) => {
        const list = buckets[b].get(key);
        if (list) list.push(i);
        else buckets[b].set(key, [i]);
      });
    }
  });
  return { duplicateOf, similarity, bands, rows, comparisons };
}

/**
 * Sorted distinct 32-bit hashes of a text's shingles (character or word n-grams of the whitespace-collapsed,
 * by default lower-cased text). A text shorter than one shingle is a single shingle.
 *
 * @example
 * shingleHashes('abcdef', { n: 5 }).length;   // 2 ('abcde', 'bcdef')
 */
export function shingleHashes(text: string, options: Pick<NearDedupeOptions, 'shingle' | 'n' | 'ignoreCase'> = {}): Uint32Array {
  const unit = options.shingle ?? 'char';
  const n = options.n ?? (unit === 'char' ? 5 : 3);
  const s = normalizeText(text, { ignoreWhitespace: true, ignoreCase: options.ignoreCase ?? true });
  const out = new Set<number>();
  if (unit === 'char') {
    if (s.length <= n) out.add(hashString(s));
    else for (let i = 0; i + n <= s.length; i++) out.add(hashString(s.slice(i, i + n)));
  } else {
    const words = s === '' ? [] : s.split(' ');
    if (words.length <= n) out.add(hashString(words.join(' ')));
    else for (let i = 0; i + n <= words.length; i++) out.add(hashString(words.slice(i, i + n).join(' ')));
  }
  return Uint32Array.from(out).sort();
}

/**
 * Jaccard similarity |A ∩ B| / |A ∪ B| of two sorted hash sets.
 *
 * @example
 * jaccard(Uint32Array.of(1, 2, 3), Uint32Array.of(2, 3, 4));   // 0.5
 */
export function jaccard(a: Uint32Array, b: Uint32Array): number {
  let i = 0;
  let j = 0;
  let common = 0;
  while (i < a.length && j < b.length) {
    if (a[i] === b[j]) {
      common++;
      i++;
      j++;
    } else if (a[i] < b[j]) i++;
    else j++;
  }
  const union = a.length + b.length - common;
  return union === 0 ? 1 : common / union;
}

/**
 * LSH banding for a threshold: b bands of r rows (b·r ≤ numPerm). A pair with Jaccard s becomes a candidate
 * with probability 1 − (1 − s^r)^b. Because candidates are confirmed exactly, a false candidate costs only a
 * comparison while a missed one keeps a duplicate; so this takes the longest bands (fewest false candidates)
 * that still catch a pair exactly at the threshold with probability ≥ `minRecall`. (The equal-weight
 * error optimum, datasketch's default, catches only 35–55 % of pairs at the threshold.)
 *
 * @example
 * lshParams(0.7, 128);   // { bands: 25, rows: 5 }: P(candidate) 0.99 at s = 0.7, 0.008 at s = 0.2
 */
export function lshParams(threshold: number, numPerm: number, minRecall = 0.95): { bands: number; rows: number } {
  let best = { bands: numPerm, rows: 1 };
  for (let r = 1; r <= numPerm; r++) {
    const b = Math.floor(numPerm / r);
    if (1 - Math.pow(1 - Math.pow(threshold, r), b) >= minRecall) best = { bands: b, rows: r };
  }
  return best;
}

// ---- hashing ----

// FNV-1a over UTF-16 code units, then murmur3's finaliser for avalanche.
function hashString(s: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return fmix32(h);
}

function fmix32(x: number): number {
  let h = x >>> 0;
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

// Permutations π_k(x) = fmix32(a_k·x + b_k) with odd a_k: a seeded family of 32-bit bijections.
function hashFamily(numPerm: number, seed: number): { a: Uint32Array; b: Uint32Array } {
  const rng = new Rng(seed);
  const word = () => (rng.int(0x10000) << 16) | rng.int(0x10000);
  const a = new Uint32Array(numPerm);
  const b = new Uint32Array(numPerm);
  for (let k = 0; k < numPerm; k++) {
    a[k] = word() | 1;
    b[k] = word();
  }
  return { a, b };
}

/**
 * The MinHash signature of a shingle set: for each of `numPerm` seeded permutations, the least permuted hash.
 * The share of positions where two signatures agree estimates the sets' Jaccard similarity.
 *
 * @example
 * const [a, b] = ['the cat sat', 'the cat sat!'].map((t) => minhashSignature(shingleHashes(t)));
 * a.filter((v, k) => v === b[k]).length / a.length;   // ≈ jaccard of the two shingle sets
 */
export function minhashSignature(set: Uint32Array, numPerm = 128, seed = 0): Uint32Array {
  return minhash(set, hashFamily(numPerm, seed));
}

function minhash(set: Uint32Array, family: { a: Uint32Array; b: Uint32Array }): Uint32Array {
  const sig = new Uint32Array(family.a.length).fill(0xffffffff);
  for (let k = 0; k < sig.length; k++) {
    const a = family.a[k];
    const b = family.b[k];
    let min = 0xffffffff;
    for (let i = 0; i < set.length; i++) {
      const v = fmix32((Math.imul(set[i], a) + b) | 0);
      if (v < min) min = v;
    }
    sig[k] = min;
  }
  return sig;
}

// One number per band; different bands live in different maps, so only same-band collisions matter, and a
// rare hash collision only adds a candidate that the exact Jaccard check then rejects.
function bandKey(sig: Uint32Array, start: number, rows: number): number {
  let h = 0x811c9dc5;
  for (let k = start; k < start + rows; k++) h = Math.imul(h ^ sig[k], 0x01000193);
  return fmix32(h);
}
