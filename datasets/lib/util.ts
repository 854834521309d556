/**
 * Small deterministic helpers of the dataset build: hashing, a seeded PRNG, text normalisation,
 * sentence splitting and answer trimming. Nothing here reads the clock, the locale or the
 * environment, so the same inputs always give the same bytes.
 */
import * as crypto from 'crypto';

/** The one seed of every shuffle and split of the build. Changing it changes every file. */
export const SEED = 'tunelab-datasets-v1';

export function sha256(data: string | Buffer): string {
  return crypto.createHash('sha256').update(data).digest('hex');
}

/** A number in [0, 1) derived from SEED and a key: a stable, seeded "coin" per key. */
export function hashUnit(key: string, seed: string = SEED): number {
  const h = crypto.createHash('sha256').update(`${seed}\u0000${key}`).digest();
  // 48 bits are plenty and stay exact in a double.
  return h.readUIntBE(0, 6) / 2 ** 48;
}

/** Seeded PRNG (sfc32 seeded from sha256(seed)); `next()` in [0, 1). */
export class Rng {
  private a: number;
  private b: number;
  private c: number;
  private d: number;

  constructor(seed: string) {
    const h = crypto.createHash('sha256').update(seed).digest();
    this.a = h.readUInt32LE(0);
    this.b = h.readUInt32LE(4);
    this.c = h.readUInt32LE(8);
    this.d = h.readUInt32LE(12);
    for (let i = 0; i < 16; i++) this.next();
  }

  next(): number {
    this.a >>>= 0; this.b >>>= 0; this.c >>>= 0; this.d >>>= 0;
    const t = (this.a + this.b) | 0;
    this.a = this.b ^ (this.b >>> 9);
    this.b = (this.c + (this.c << 3)) | 0;
    this.c = (this.c << 21) | (this.c >>> 11);
    this.d = (this.d + 1) | 0;
    const r = (t + this.d) | 0;
    this.c = (this.c + r) | 0;
    return (r >>> 0) / 4294967296;
  }

  /** Integer in [0, n). */
  int(n: number): number {
    return Math.floor(this.next() * n);
  }

  pick<T>(items: readonly T[]): T {
    if (items.length === 0) throw new Error('pick from an empty list');
    return items[this.int(items.length)];
  }

  /** Fisher–Yates shuffle of a copy. */
  shuffle<T>(items: readonly T[]): T[] {
    const out = items.slice();
    for (let i = out.length - 1; i > 0; i--) {
      const j = this.int(i + 1);
      [out[i], out[j]] = [out[j], out[i]];
    }
    return out;
  }
}

/** Code-unit string comparison (never localeCompare: it depends on the ICU build and locale). */
export function cmp(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/** Sorts items by the seeded hash of their key (ties by key): a reproducible shuffle. */
export function hashOrder<T>(items: readonly T[], key: (t: T) => string, salt: string): T[] {
  const keyed = items.map((t) => ({ t, k: key(t), h: hashUnit(`${salt}\u0000${key(t)}`) }));
  keyed.sort((x, y) => x.h - y.h || cmp(x.k, y.k));
  return keyed.map((x) => x.t);
}

/**
 * Normalises a block of text: Unicode NFC, \r\n and \r to \n, tabs kept, other control
 * characters and non-breaking/zero-width spaces removed or made plain, trailing spaces
 * stripped from every line, runs of blank lines collapsed to one, no leading/trailing blank lines.
 */
export function cleanText(text: string): string {
  let t = text.normalize('NFC').replace(/\r\n?/g, '\n');
  t = t.replace(/[\u00a0\u2007\u202f]/g, ' ').replace(/[\u200b\u200c\u200d\u2060\ufeff\u00ad]/g, '');
  // eslint-disable-next-line no-control-regex
  t = t.replace(/[\u0000-\u0008\u000b-\u001f\u007f]/g, '');
  t = t
    .split('\n')
    .map((l) => l.replace(/[ \t]+$/, ''))
    .join('\n');
  t = t.replace(/\n{3,}/g, '\n\n');
  return t.replace(/^\n+/, '').replace(/\n+$/, '');
}

/** One line of plain prose: whitespace runs to single spaces, trimmed. */
export function oneLine(text: string): string {
  return text.replace(/\s+/g, ' ').trim();
}

const ABBREVIATIONS = new Set([
  'mr', 'mrs', 'ms', 'dr', 'st', 'jr', 'sr', 'gen', 'gov', 'sen', 'rep', 'hon', 'rev', 'prof', 'col', 'capt',
  'lt', 'sgt', 'vs', 'etc', 'no', 'nos', 'vol', 'fig', 'e.g', 'i.e', 'cf', 'inc', 'co', 'ltd', 'jan', 'feb',
  'mar', 'apr', 'jun', 'jul', 'aug', 'sep', 'sept', 'oct', 'nov', 'dec', 'u.s', 'u.s.a', 'u.n', 'd.c', 'mt',
  'ft', 'approx', 'dept', 'est', 'op', 'ch', 'viz', 'ave', 'bros',
]);

/**
 * Splits prose into sentences at . ! ? (optionally followed by closing quotes/brackets) that are
 * followed by whitespace and an upper-case letter, digit or opening quote, except after common
 * abbreviations and single initials. Good enough for speeches and novels; never loses characters
 * other than the whitespace between sentences.
 */
export function splitSentences(text: string): string[] {
  const t = oneLine(text);
  const out: string[] = [];
  const re = /[.!?]+["'”’)\]]*\s+(?=["'“‘(\[]?[A-Z0-9])/g;
  let start = 0;
  let m: RegExpExecArray | null;
  while ((m = re.exec(t)) !== null) {
    const end = m.index + m[0].trimEnd().length;
    const before = t.slice(start, m.index + 1);
    const lastWord = (/([A-Za-z.]+)\.$/.exec(before)?.[1] ?? '').toLowerCase();
    if (m[0].startsWith('.') && (ABBREVIATIONS.has(lastWord.replace(/\.$/, '')) || /^[a-z]$/.test(lastWord))) continue;
    out.push(t.slice(start, end));
    start = m.index + m[0].length;
  }
  if (start < t.length) out.push(t.slice(start));
  return out.filter((s) => s.length > 0);
}

/**
 * Trims an answer to at most `max` characters: whole paragraphs while they fit, then trailing
 * paragraphs that would leave it dangling are removed (prose not ending a sentence, or a code
 * block, indented, not introduced by a ":" paragraph). If not even the first paragraph fits, it
 * is cut at its last sentence end that fits. Returns '' when nothing sensible fits.
 */
export function trimAnswer(text: string, max: number): string {
  const paras = text
    .split(/\n\n+/)
    .map((p) => p.replace(/\s+$/, '').replace(/^\n+/, ''))
    .filter((p) => p.trim().length > 0);
  const isCode = (p: string): boolean => /^\s/.test(p);
  const kept: string[] = [];
  let len = 0;
  for (const p of paras) {
    const add = (kept.length ? 2 : 0) + p.length;
    if (len + add > max) break;
    kept.push(p);
    len += add;
  }
  while (kept.length > 0) {
    const last = kept[kept.length - 1];
    if (isCode(last)) {
      const prev = kept[kept.length - 2];
      if (prev !== undefined && !isCode(prev) && /:$/.test(prev)) break;
    } else if (/[.!?)"'”’]$/.test(last)) {
      break;
    }
    kept.pop();
  }
  if (kept.length > 0) return kept.join('\n\n');
  const first = paras[0];
  if (first === undefined || isCode(first) || first.includes('\n')) return '';
  let acc = '';
  for (const s of splitSentences(first)) {
    const next = acc ? `${acc} ${s}` : s;
    if (next.length > max) break;
    acc = next;
  }
  return /[.!?)"'”’]$/.test(acc) ? acc : '';
}

/** Upper-cases the first letter. */
export function capitalize(s: string): string {
  return s.length ? s[0].toUpperCase() + s.slice(1) : s;
}
