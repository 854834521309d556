/**
 * Byte-level BPE training (GPT-2 style) producing a Hugging Face `tokenizer.json`.
 *
 * Word frequencies are counted once; each merge then only revisits the words that contain the merged
 * pair and patches the pair counts around each occurrence, so a merge costs time proportional to where
 * the pair occurs rather than to the corpus.
 */
import { byteToUnicode, preTokenize } from './bytes';
import { byteLevelTokenizerJson, type IdToken, type TokenizerJson } from './json';
import { withDefaults } from '../util/options';

/** Options of {@link trainBpe} / `Tokenizer.train`. Start from {@link bpeDefaults}. */
export interface BpeOptions {
  /**
   * Total vocabulary size: special tokens + 256 byte tokens + learned merges. Training stops early
   * (with a smaller vocabulary) only when no pair occurs at least `minFrequency` times.
   */
  vocabSize: number;
  /** End-of-text token (id 0 when set); `null` for none. */
  eosToken: string | null;
  /** Beginning-of-text token; `null` for none (encode's `addBos` then falls back to eos, as GPT-2 does). */
  bosToken: string | null;
  /** Padding token; `null` for none (padding then falls back to eos). */
  padToken: string | null;
  /** ChatML turn-start token; `null` for none. */
  imStartToken: string | null;
  /** ChatML turn-end token; `null` for none. */
  imEndToken: string | null;
  /** More special tokens, given ids after the named ones in this order. */
  additionalSpecialTokens: readonly string[];
  /** A pair seen fewer times than this in the corpus is never merged. */
  minFrequency: number;
}

/**
 * Default training options. Frozen: override by spreading.
 *
 * @example
 * const opts: BpeOptions = { ...bpeDefaults, vocabSize: 1024 };
 */
export const bpeDefaults: Readonly<BpeOptions> = Object.freeze({
  vocabSize: 4096,
  eosToken: '<|endoftext|>',
  bosToken: '<|startoftext|>',
  padToken: '<|pad|>',
  imStartToken: '<|im_start|>',
  imEndToken: '<|im_end|>',
  additionalSpecialTokens: Object.freeze([] as string[]),
  minFrequency: 2,
});

/** Named special-token options, in id order. */
const namedSpecials = ['eosToken', 'bosToken', 'padToken', 'imStartToken', 'imEndToken'] as const;

/**
 * Which special-token role each named option fills (used to tell the Tokenizer which token is which).
 *
 * @example
 * specialRoleOfOption.imEndToken; // 'imEnd'
 */
export const specialRoleOfOption = {
  eosToken: 'eos',
  bosToken: 'bos',
  padToken: 'pad',
  imStartToken: 'imStart',
  imEndToken: 'imEnd',
} as const;

/**
 * Checks options (naming the offending one) and returns them complete plus the special tokens in id order.
 *
 * @example
 * resolveBpeOptions({ vocabSize: 512, bosToken: null }).specials;
 * // ['<|endoftext|>', '<|pad|>', '<|im_start|>', '<|im_end|>']
 */
export function resolveBpeOptions(options: Partial<BpeOptions>): { opts: BpeOptions; specials: string[] } {
  if (typeof options !== 'object' || options === null) throw new TypeError('BPE options must be an object');
  const opts: BpeOptions = withDefaults(bpeDefaults, options, 'BPE');
  const specials: string[] = [];
  const origin = new Map<string, string>();
  const addSpecial = (token: unknown, name: string): void => {
    if (typeof token !== 'string' || token === '') throw new Error(`${name} must be a non-empty string${name.includes('[') ? '' : ' or null'}, got ${JSON.stringify(token)}`);
    const first = origin.get(token);
    if (first !== undefined) throw new Error(`duplicate special token ${JSON.stringify(token)}: both ${first} and ${name}`);
    // A special spelled like a byte token would need two ids for one vocab key.
    if (byteToUnicode.includes(token)) throw new Error(`${name} ${JSON.stringify(token)} collides with a byte token`);
    origin.set(token, name);
    specials.push(token);
  };
  for (const name of namedSpecials) {
    if (opts[name] !== null) addSpecial(opts[name], name);
  }
  if (!Array.isArray(opts.additionalSpecialTokens)) throw new Error('additionalSpecialTokens must be an array of strings');
  opts.additionalSpecialTokens.forEach((t, i) => addSpecial(t, `additionalSpecialTokens[${i}]`));

  const minVocab = 256 + specials.length;
  if (!Number.isSafeInteger(opts.vocabSize) || opts.vocabSize < minVocab) {
    throw new Error(`vocabSize must be an integer of at least ${minVocab} (256 byte tokens + ${specials.length} special tokens), got ${opts.vocabSize}`);
  }
  if (!Number.isSafeInteger(opts.minFrequency) || opts.minFrequency < 1) {
    throw new Error(`minFrequency must be an integer of at least 1, got ${opts.minFrequency}`);
  }
  return { opts, specials };
}

/** Max-heap of candidate merges: higher count first, ties to the lower (left, right) token ids. */
class PairHeap {
  private readonly counts: number[] = [];
  private readonly lefts: number[] = [];
  private readonly rights: number[] = [];

  get size(): number {
    return this.counts.length;
  }

  private before(i: number, j: number): boolean {
    const c = this.counts;
    if (c[i] !== c[j]) return c[i] > c[j];
    if (this.lefts[i] !== this.lefts[j]) return this.lefts[i] < this.lefts[j];
    return this.rights[i] < this.rights[j];
  }

  private swap(i: number, j: number): void {
    for (const a of [this.counts, this.lefts, this.rights]) {
      const t = a[i];
      a[i] = a[j];
      a[j] = t;
    }
  }

  push(count: number, left: number, right: number): void {
    this.counts.push(count);
    this.lefts.push(left);
    this.rights.push(right);
    let i = this.counts.length - 1;
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (!this.before(i, p)) break;
      this.swap(i, p);
      i = p;
    }
  }

  /** Removes the top entry and returns it as [count, left, right]. */
  pop(): [number, number, number] {
    const top: [number, number, number] = [this.counts[0], this.lefts[0], this.rights[0]];
    const last = this.counts.length - 1;
    this.swap(0, last);
    this.counts.pop();
    this.lefts.pop();
    this.rights.pop();
    let i = 0;
    for (;;) {
      const l = 2 * i + 1;
      const r = l + 1;
      let best = i;
      if (l < last && this.before(l, best)) best = l;
      if (r < last && this.before(r, best)) best = r;
      if (best === i) break;
      this.swap(i, best);
      i = best;
    }
    return top;
  }
}

/** Escapes a string for use inside a RegExp. */
function escapeRegExp(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

/**
 * Trains a GPT-2-style byte-level BPE and returns the complete HF `tokenizer.json` object.
 *
 * Ids: special tokens first (eos, bos, pad, im_start, im_end, then `additionalSpecialTokens`, skipping
 * nulls), then the 256 byte tokens in byte order, then merged tokens in the order they were learned.
 * Special-token strings inside the texts are cut out before counting, so no merge spans them.
 * Deterministic: the most frequent pair wins; ties go to the pair with the lower left token id, then
 * the lower right token id (byte order for single bytes, learning order for merged tokens).
 *
 * @example
 * const json = trainBpe(['the cat sat on the mat'], { ...bpeDefaults, vocabSize: 300, minFrequency: 1 });
 * json.model.merges[0]; // 'a t'
 */
export function trainBpe(texts: readonly string[], options: Partial<BpeOptions> = {}): TokenizerJson {
  const { opts, specials } = resolveBpeOptions(options);
  if (!Array.isArray(texts)) throw new TypeError('texts must be an array of strings');

  // 1. Word frequencies, counted once. Specials are removed first so they never join a merge.
  const splitter = specials.length
    ? new RegExp([...specials].sort((x, y) => y.length - x.length).map(escapeRegExp).join('|'), 'g')
    : null;
  const wordFreq = new Map<string, number>();
  texts.forEach((text, i) => {
    if (typeof text !== 'string') throw new TypeError(`texts[${i}] must be a string, got ${typeof text}`);
    for (const segment of splitter ? text.split(splitter) : [text]) {
      for (const w of preTokenize(segment)) wordFreq.set(w, (wordFreq.get(w) ?? 0) + 1);
    }
  });
  if (wordFreq.size === 0) throw new Error('texts: the corpus is empty (no text outside special tokens)');

  // 2. Words as arrays of internal token ids (0..255 = bytes, then merged tokens).
  const utf8 = new TextEncoder();
  const words: number[][] = [];
  const freqs: number[] = [];
  for (const [w, f] of wordFreq) {
    words.push(Array.from(utf8.encode(w)));
    freqs.push(f);
  }
  const tokStr: string[] = [...byteToUnicode];
  const strToTok = new Map<string, number>(tokStr.map((s, i) => [s, i]));
  const specialSet = new Set(specials);
  const maxTokens = opts.vocabSize - specials.length;

  // Pair key = left * V + right; V bounds every internal id, and V² stays a safe integer.
  const V = opts.vocabSize;
  const pairCount = new Map<number, number>();
  const where = new Map<number, Set<number>>();
  const addPair = (key: number, delta: number, w: number): void => {
    pairCount.set(key, (pairCount.get(key) ?? 0) + delta);
    if (delta > 0) {
      let s = where.get(key);
      if (!s) where.set(key, (s = new Set()));
      s.add(w);
    }
  };
  for (let w = 0; w < words.length; w++) {
    const s = words[w];
    for (let i = 0; i + 1 < s.length; i++) addPair(s[i] * V + s[i + 1], freqs[w], w);
  }
  const heap = new PairHeap();
  for (const [key, count] of pairCount) heap.push(count, Math.floor(key / V), key % V);

  // 3. Merge until the vocabulary is full or no pair is frequent enough.
  const merges: string[] = [];
  const banned = new Set<number>();
  const emitted = new Set<number>();
  const changed = new Set<number>();
  while (tokStr.length < maxTokens && heap.size > 0) {
    const [count, a, b] = heap.pop();
    const key = a * V + b;
    const current = pairCount.get(key) ?? 0;
    if (current !== count) {
      // Stale entry: its count fell since it was pushed; re-queue at the true count.
      if (current > 0) heap.push(current, a, b);
      continue;
    }
    if (count < opts.minFrequency) break;
    if (banned.has(key)) continue;
    const merged = tokStr[a] + tokStr[b];
    if (specialSet.has(merged)) {
      // Learning a token spelled like a special would give one vocab key two ids.
      banned.add(key);
      continue;
    }
    let c = strToTok.get(merged);
    if (c === undefined) {
      // Should two pairs ever spell the same token ("ab"+"c", "a"+"bc"), reuse its id as HF does.
      c = tokStr.length;
      tokStr.push(merged);
      strToTok.set(merged, c);
    }
    // A reused id can bring a merged pair back; apply it again but list it once (rank = first use).
    if (!emitted.has(key)) {
      emitted.add(key);
      merges.push(`${tokStr[a]} ${tokStr[b]}`);
    }

    changed.clear();
    for (const w of where.get(key) ?? []) {
      const s = words[w];
      const f = freqs[w];
      const out: number[] = [];
      let i = 0;
      let hit = false;
      while (i < s.length) {
        if (i + 1 < s.length && s[i] === a && s[i + 1] === b) {
          hit = true;
          // The left neighbour is read from `out`, so back-to-back occurrences see the new token.
          if (out.length > 0) {
            const p = out[out.length - 1];
            addPair(p * V + a, -f, w);
            addPair(p * V + c, f, w);
            changed.add(p * V + c);
          }
          if (i + 2 < s.length) {
            addPair(b * V + s[i + 2], -f, w);
            addPair(c * V + s[i + 2], f, w);
            changed.add(c * V + s[i + 2]);
          }
          out.push(c);
          i += 2;
        } else {
          out.push(s[i++]);
        }
      }
      if (hit) words[w] = out;
    }
    pairCount.delete(key);
    where.delete(key);
    // Counts only ever rise through `changed`; falls are caught lazily when popped.
    for (const k of changed) {
      const n = pairCount.get(k) ?? 0;
      if (n > 0) heap.push(n, Math.floor(k / V), k % V);
    }
  }

  // 4. Assemble: specials first, then bytes, then merged tokens.
  const vocab: Record<string, number> = {};
  const idTokens: IdToken[] = specials.map((token, id) => ({ token, id }));
  for (const { token, id } of idTokens) vocab[token] = id;
  tokStr.forEach((t, i) => (vocab[t] = specials.length + i));
  return byteLevelTokenizerJson(vocab, merges, idTokens);
}
