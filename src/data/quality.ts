/**
 * A data-quality report for a corpus before training: exact and near duplicates, lengths, charset anomalies,
 * format problems and, with a tokenizer, how much of the text the tokenizer has not learned. One table
 * (one row per check), charts, and the figures as plain fields. Nothing is removed: the hygiene verbs of
 * `Corpus` do that once the report says which are needed.
 *
 * The checked text of a row is its format's columns (text; messages; prompt + completion; prompt + chosen +
 * rejected) as {@link cellText} writes them, joined by newlines; `columns` picks others.
 *
 * @example
 * const q = Corpus.load('data/sft.jsonl').quality({ tokenizer: tok });
 * q.table().print();
 * q.plot().forEach((c) => c.show());
 */
import { inspect } from 'util';
import * as aq from 'arquero';
import type { ColumnTable } from 'arquero';
import { checkOptions } from '../util/options';
import { quantile } from '../util/linalg';
import { Chart } from '../viz/chart';
import { mimeBundleKey } from '../viz/display';
import { escapeHtml } from '../viz/html';
import { tableHtml } from '../viz/table';
import { unicodeToByte } from '../tokenizer/bytes';
import { cellText } from './text';
import { exactDuplicates, nearDuplicates, normalizeText, type NearDedupeOptions } from './dedupe';
import { DatasetError, FORMAT_COLUMNS, detectFormat, formatProblem, validateDataset, type DatasetFormat, type DatasetProblem } from './formats';
import { ROW_COLUMN, dataColumns } from './frames';

/** What the report needs of a tokenizer; tunelab's `Tokenizer` fits. */
export interface QualityTokenizer {
  encode(text: string): ArrayLike<number>;
  /** Token strings, to recognise byte pieces (`<0xE3>`, or a lone byte of a byte-level BPE). */
  idToToken?(id: number): string | undefined;
  specialTokens?: { readonly unk?: { readonly id: number } };
}

/** Options of {@link qualityReport}. */
export interface QualityOptions {
  /** Columns whose text is checked (default: the dataset format's columns, else every data column). */
  columns?: string | readonly string[];
  /** Adds token lengths, the unknown/byte-piece share and the fragmented-word share. */
  tokenizer?: QualityTokenizer;
  /** A word counts as unseen by the tokenizer when it takes at least this many tokens (default 4). */
  minPieces?: number;
  /** Near-duplicate search (default: Jaccard ≥ 0.8 over 5-character shingles, as `Corpus.nearDedupe`). */
  near?: NearDedupeOptions;
  /** Compare exact duplicates case-insensitively (default false; whitespace is always collapsed, as `dedupe`). */
  ignoreCase?: boolean;
  /** Format the rows are validated against (default `'auto'`); `false` skips the format check. */
  format?: DatasetFormat | 'auto' | false;
  /** Accepted message roles of the format check (default the validator's). */
  roles?: readonly string[];
  /** Histogram bins (default 20). */
  bins?: number;
  /** Examples kept per check (default 5). */
  examples?: number;
}

const optionKeys: readonly (keyof QualityOptions)[] = ['columns', 'tokenizer', 'minPieces', 'near', 'ignoreCase', 'format', 'roles', 'bins', 'examples'];

/** Rows with one anomaly: how many, their share of the rows, and the first few (row numbers as in `DatasetProblem`). */
export interface RowCheck {
  count: number;
  share: number;
  rows: number[];
  examples: string[];
}

/** Length statistics and an equal-width histogram (bin `k` holds lengths in [edges[k], edges[k + 1])). */
export interface LengthStats {
  unit: 'chars' | 'tokens';
  min: number;
  median: number;
  p95: number;
  max: number;
  mean: number;
  edges: number[];
  counts: number[];
}

/** The figures of a quality report; see {@link QualityReport}. */
export interface QualityFigures {
  rows: number;
  columns: string[];
  /** Exact duplicates: rows repeating an earlier row, and the most repeated texts with their number of copies. */
  duplicates: { count: number; share: number; groups: number; top: { text: string; count: number }[] };
  /** Near duplicates among the rows left after exact dedupe: rows nearly copying an earlier one, and their clusters. */
  nearDuplicates: { count: number; share: number; clusters: number; threshold: number; examples: { row: number; of: number; similarity: number }[] };
  lengths: { chars: LengthStats; tokens?: LengthStats };
  /** U+FFFD (text decoded from broken bytes). */
  replacement: RowCheck;
  /** C0/C1 control characters other than tab, newline and carriage return. */
  control: RowCheck;
  /** Letters of more than one script in a row (Han, kana and Hangul count as one CJK group). */
  mixedScripts: RowCheck;
  /** Text that Unicode NFC normalisation changes. */
  nonNfc: RowCheck;
  /** Empty or whitespace-only text. */
  empty: RowCheck;
  /** Rows the format validator rejects (`error`: why the whole table fails, e.g. a missing column), and rows dropped at load. */
  format: RowCheck & { format?: DatasetFormat; problems: DatasetProblem[]; error?: string; droppedEarlier: number };
  tokenizer?: {
    tokens: number;
    /** Tokens that are the unknown token or a byte piece; share of all tokens. */
    unknown: { count: number; share: number };
    /** Word occurrences taking ≥ `minPieces` tokens ("unseen by the tokenizer"); share of all word occurrences. */
    fragmented: { count: number; share: number; words: number; minPieces: number; top: { word: string; count: number; pieces: number }[] };
  };
}

// Scripts told apart for mixing; other letters are "Other". CJK writing mixes Han with kana or Hangul by design.
const SCRIPTS: readonly (readonly [string, RegExp])[] = [
  ['Latin', /\p{Script=Latin}/u], ['Cyrillic', /\p{Script=Cyrillic}/u], ['Greek', /\p{Script=Greek}/u],
  ['Arabic', /\p{Script=Arabic}/u], ['Hebrew', /\p{Script=Hebrew}/u], ['Armenian', /\p{Script=Armenian}/u],
  ['Georgian', /\p{Script=Georgian}/u], ['Devanagari', /\p{Script=Devanagari}/u], ['Bengali', /\p{Script=Bengali}/u],
  ['Tamil', /\p{Script=Tamil}/u], ['Thai', /\p{Script=Thai}/u],
  ['CJK', /[\p{Script=Han}\p{Script=Hiragana}\p{Script=Katakana}\p{Script=Hangul}\p{Script=Bopomofo}]/u],
];
const CONTROL = /[\p{Cc}]/u;
const WORD = /[\p{L}\p{M}\p{N}]+/gu;
// Letters of a script: Common ones (µ, ª) belong to none, so they never make a row mixed.
const LETTER = /(?![\p{Script=Common}\p{Script=Inherited}])\p{L}/u;

/** What the report reads of a corpus (a `Corpus` is one). */
export interface QualitySource {
  readonly name?: string;
  readonly table: ColumnTable;
  readonly size: number;
  /** Rows dropped when the data was loaded. */
  readonly problems: readonly DatasetProblem[];
}

/**
 * The data-quality report of a corpus; see {@link QualityReport}. Deterministic (the near-duplicate search is seeded).
 *
 * @example
 * qualityReport(corpus, { tokenizer: tok, near: { threshold: 0.7 } }).table().print();
 */
export function qualityReport(corpus: QualitySource, options: QualityOptions = {}): QualityReport {
  checkOptions(options, optionKeys, 'quality');
  const examples = options.examples ?? 5;
  const minPieces = options.minPieces ?? 4;
  if (!(Number.isInteger(minPieces) && minPieces >= 2)) throw new Error(`quality: minPieces must be an integer ≥ 2 (got ${minPieces})`);
  const table = corpus.table;
  const columns = checkedColumns(table, options.columns);
  const n = table.numRows();
  const arrays = columns.map((c) => table.array(c));
  const cells = Array.from({ length: n }, (_, i) => arrays.map((a) => cellText(a[i])));
  const texts = cells.map((c) => c.join('\n'));
  const rowNumbers = Array.from(table.columnNames().includes(ROW_COLUMN) ? table.array(ROW_COLUMN) : [], Number);
  const rowOf = (i: number) => (Number.isFinite(rowNumbers[i]) ? rowNumbers[i] : i + 1);
  const share = (k: number, of = n) => (of === 0 ? 0 : k / of);

  // Exact duplicates on the columns (joined by \u0000 as `dedupe` does), whitespace collapsed.
  const keys = cells.map((c) => c.join('\u0000'));
  const { duplicateOf } = exactDuplicates(keys, { ignoreCase: options.ignoreCase });
  const copies = new Map<number, number>();
  duplicateOf.forEach((d) => d >= 0 && copies.set(d, (copies.get(d) ?? 0) + 1));
  const dupCount = duplicateOf.filter((d) => d >= 0).length;
  const top = [...copies].sort((a, b) => b[1] - a[1] || a[0] - b[0]).slice(0, examples).map(([i, c]) => ({ text: texts[i], count: c + 1 }));

  // Near duplicates among first occurrences, so exact copies are not counted twice.
  const firsts = duplicateOf.flatMap((d, i) => (d < 0 ? [i] : []));
  const near = nearDuplicates(firsts.map((i) => texts[i]), options.near);
  const nearRows = near.duplicateOf.flatMap((d, k) => (d >= 0 ? [{ row: rowOf(firsts[k]), of: rowOf(firsts[d]), similarity: near.similarity[k] }] : []));
  const clusters = new Set(near.duplicateOf.filter((d) => d >= 0)).size;

  const rowCheck = (test: (t: string) => boolean, label = (t: string) => snippet(t)): RowCheck => {
    const hits = texts.flatMap((t, i) => (test(t) ? [i] : []));
    return { count: hits.length, share: share(hits.length), rows: hits.slice(0, examples).map(rowOf), examples: hits.slice(0, examples).map((i) => label(texts[i])) };
  };

  const charLengths = texts.map((t) => t.length);
  let tokenizer: QualityFigures['tokenizer'];
  let tokenLengths: number[] | undefined;
  if (options.tokenizer) {
    const tok = options.tokenizer;
    const encoded = texts.map((t) => tok.encode(t));
    tokenLengths = encoded.map((e) => e.length);
    tokenizer = { tokens: tokenLengths.reduce((a, b) => a + b, 0), unknown: unknownTokens(tok, encoded), fragmented: fragmentedWords(tok, texts, minPieces, examples) };
  }

  return new QualityReport({
    rows: n,
    columns,
    duplicates: { count: dupCount, share: share(dupCount), groups: copies.size, top },
    nearDuplicates: { count: nearRows.length, share: share(nearRows.length), clusters, threshold: options.near?.threshold ?? 0.8, examples: nearRows.slice(0, examples) },
    lengths: { chars: lengthStats(charLengths, 'chars', options.bins), ...(tokenLengths && { tokens: lengthStats(tokenLengths, 'tokens', options.bins) }) },
    replacement: rowCheck((t) => t.includes('\uFFFD')),
    control: rowCheck((t) => CONTROL.test(t.replace(/[\t\n\r]/g, ''))),
    mixedScripts: rowCheck((t) => scriptsOf(t).length > 1, (t) => `${scriptsOf(t).join('+')}: ${snippet(t)}`),
    nonNfc: rowCheck((t) => t !== t.normalize('NFC')),
    empty: rowCheck((t) => t.trim() === ''),
    format: formatCheck(corpus, options, examples),
    ...(tokenizer && { tokenizer }),
  }, corpus.name);
}

/**
 * What {@link qualityReport} found: the figures as fields, {@link table} (one row per check), {@link plot}
 * (length histograms and problem shares), and a printed / notebook summary.
 */
export class QualityReport implements QualityFigures {
  readonly rows!: number;
  readonly columns!: string[];
  readonly duplicates!: QualityFigures['duplicates'];
  readonly nearDuplicates!: QualityFigures['nearDuplicates'];
  readonly lengths!: QualityFigures['lengths'];
  readonly replacement!: RowCheck;
  readonly control!: RowCheck;
  readonly mixedScripts!: RowCheck;
  readonly nonNfc!: RowCheck;
  readonly empty!: RowCheck;
  readonly format!: QualityFigures['format'];
  readonly tokenizer?: QualityFigures['tokenizer'];

  constructor(figures: QualityFigures, readonly name?: string) {
    Object.assign(this, figures);
  }

  /**
   * One row per check: `check`, `count`, `share` (of rows; of tokens or word occurrences for the tokenizer
   * checks) and `examples` (row numbers and text).
   *
   * @example
   * corpus.quality().table().print();
   */
  table(): ColumnTable {
    const rows: { check: string; count: number; share: number; examples: string }[] = [];
    const listed = (c: RowCheck) => c.rows.map((r, k) => `row ${r}: ${c.examples[k]}`).join(' | ');
    rows.push({ check: 'exact duplicates', count: this.duplicates.count, share: this.duplicates.share,
      examples: this.duplicates.top.map((t) => `×${t.count} ${snippet(t.text)}`).join(' | ') });
    rows.push({ check: `near duplicates (Jaccard ≥ ${this.nearDuplicates.threshold}, ${this.nearDuplicates.clusters} clusters)`, count: this.nearDuplicates.count,
      share: this.nearDuplicates.share, examples: this.nearDuplicates.examples.map((e) => `row ${e.row} ≈ row ${e.of} (${e.similarity.toFixed(2)})`).join(' | ') });
    rows.push({ check: 'empty or whitespace only', count: this.empty.count, share: this.empty.share, examples: listed(this.empty) });
    rows.push({ check: 'U+FFFD replacement characters', count: this.replacement.count, share: this.replacement.share, examples: listed(this.replacement) });
    rows.push({ check: 'control characters', count: this.control.count, share: this.control.share, examples: listed(this.control) });
    rows.push({ check: 'mixed scripts', count: this.mixedScripts.count, share: this.mixedScripts.share, examples: listed(this.mixedScripts) });
    rows.push({ check: 'not NFC', count: this.nonNfc.count, share: this.nonNfc.share, examples: listed(this.nonNfc) });
    const f = this.format;
    rows.push({ check: `format errors${f.format ? ` (${f.format})` : ''}`, count: f.count, share: f.share,
      examples: [f.error, ...f.problems.slice(0, f.rows.length).map((p) => formatProblem(p)), f.droppedEarlier ? `${f.droppedEarlier} rows dropped earlier (corpus.problems)` : '']
        .filter(Boolean).join(' | ') });
    const t = this.tokenizer;
    if (t) {
      rows.push({ check: 'unknown or byte-piece tokens', count: t.unknown.count, share: t.unknown.share, examples: `${t.tokens} tokens` });
      rows.push({ check: `words split into ≥ ${t.fragmented.minPieces} tokens`, count: t.fragmented.count, share: t.fragmented.share,
        examples: t.fragmented.top.map((w) => `${w.word} (${w.pieces} tokens, ×${w.count})`).join(' | ') });
    }
    return aq.from(rows);
  }

  /** Charts: the length histogram in characters, in tokens when a tokenizer was given, and the share of rows each check flags. */
  plot(): Chart[] {
    const hist = (s: LengthStats) => new Chart({
      data: [{ type: 'bar', name: 'rows', x: binLabels(s), y: s.counts, marker: { color: '#1f77b4' } }],
      layout: { title: { text: `Length in ${s.unit}: median ${round(s.median)}, p95 ${round(s.p95)}, max ${s.max}` }, height: 360, bargap: 0.05,
        xaxis: { title: { text: s.unit }, type: 'category' }, yaxis: { title: { text: 'rows' } }, margin: { l: 60, r: 30, t: 50, b: 80 } },
    });
    const table = this.table().objects() as { check: string; share: number }[];
    const shares = new Chart({
      data: [{ type: 'bar', name: 'share', x: table.map((r) => r.check), y: table.map((r) => r.share), marker: { color: '#d62728' } }],
      layout: { title: { text: 'Problems: share flagged by each check' }, height: 380, xaxis: { type: 'category' }, yaxis: { title: { text: 'share' }, tickformat: '.1%' },
        margin: { l: 60, r: 30, t: 50, b: 140 } },
    });
    return [hist(this.lengths.chars), ...(this.lengths.tokens ? [hist(this.lengths.tokens)] : []), shares];
  }

  /** The report as text: a headline, the length statistics and the checks. */
  summary(): string {
    const { chars, tokens } = this.lengths;
    const stats = (s: LengthStats) => `${s.unit}: min ${s.min}, median ${round(s.median)}, p95 ${round(s.p95)}, max ${s.max}`;
    const lines = [this.headline(), `  lengths ${stats(chars)}${tokens ? `; ${stats(tokens)}` : ''}`];
    for (const r of this.table().objects() as { check: string; count: number; share: number }[]) {
      lines.push(`  ${r.check.padEnd(44)} ${String(r.count).padStart(7)}  ${(100 * r.share).toFixed(2).padStart(6)} %`);
    }
    return lines.join('\n');
  }

  /** `console.log(report)` prints {@link summary}. */
  [inspect.custom](): string {
    return this.summary();
  }

  /** Notebook output: the headline, the table of checks and the charts' pictures. */
  [mimeBundleKey](): { 'text/plain': string; 'text/html': string } {
    const charts = this.plot().map((c) => c.html()).join('');
    const html = `<div class="tunelab-quality"><div style="font-weight:bold;margin-bottom:4px">${escapeHtml(this.headline())}</div>` +
      `${tableHtml(this.table(), { limit: 50, maxChars: 300 })}${charts}</div>`;
    return { 'text/plain': this.summary(), 'text/html': html };
  }

  private headline(): string {
    const name = this.name === undefined ? 'corpus' : JSON.stringify(this.name);
    return `Quality of ${name}: ${this.rows.toLocaleString('en-US')} rows, columns ${this.columns.join(' + ')}`;
  }
}

/** Equal-width integer bins from min to max (at most `bins`), and order statistics. */
export function lengthStats(lengths: readonly number[], unit: LengthStats['unit'], bins = 20): LengthStats {
  if (!(Number.isInteger(bins) && bins >= 1)) throw new Error(`quality: bins must be a positive integer (got ${bins})`);
  if (lengths.length === 0) return { unit, min: 0, median: 0, p95: 0, max: 0, mean: 0, edges: [0, 1], counts: [0] };
  let min = Infinity;
  let max = -Infinity;
  for (const v of lengths) {
    if (v < min) min = v;
    if (v > max) max = v;
  } // not Math.min(...lengths): that overflows the call stack beyond about 120k rows
  const width = Math.max(1, Math.ceil((max - min + 1) / bins));
  const k = Math.ceil((max - min + 1) / width);
  const counts = new Array<number>(k).fill(0);
  for (const v of lengths) counts[Math.floor((v - min) / width)]++;
  return {
    unit, min, max, median: quantile(lengths, 0.5), p95: quantile(lengths, 0.95), mean: lengths.reduce((a, b) => a + b, 0) / lengths.length,
    edges: Array.from({ length: k + 1 }, (_, j) => min + j * width), counts,
  };
}

// "12–15" for integer bin [12, 16); "12" when the bin holds one value.
function binLabels(s: LengthStats): string[] {
  return s.counts.map((_, j) => (s.edges[j + 1] - s.edges[j] === 1 ? String(s.edges[j]) : `${s.edges[j]}–${s.edges[j + 1] - 1}`));
}

function checkedColumns(table: ColumnTable, given: QualityOptions['columns']): string[] {
  const all = dataColumns(table);
  if (given !== undefined) {
    const cols = typeof given === 'string' ? [given] : [...given];
    for (const c of cols) if (!table.columnNames().includes(c)) throw new Error(`quality: no column "${c}" (columns: ${all.join(', ')})`);
    if (cols.length === 0) throw new Error('quality: columns is empty');
    return cols;
  }
  try {
    const format = detectFormat(table);
    return FORMAT_COLUMNS[format].filter((c) => all.includes(c) && c !== 'label');
  } catch {
    return all;
  }
}

// The validator's verdict on every row; a table that fails as a whole (missing column) is one error, every row counted.
function formatCheck(corpus: QualitySource, options: QualityOptions, examples: number): QualityFigures['format'] {
  const n = corpus.size;
  const droppedEarlier = corpus.problems.length;
  const none = { count: 0, share: 0, rows: [], examples: [], problems: [], droppedEarlier };
  if (options.format === false || n === 0) return none;
  try {
    const result = validateDataset(corpus.table, options.format ?? 'auto', { skipBad: true, ...(options.roles && { roles: options.roles }) });
    const shown = result.problems.slice(0, examples);
    return { count: result.problems.length, share: result.problems.length / n, rows: shown.map((p) => p.row), examples: shown.map((p) => p.problem),
      problems: result.problems, format: result.format, droppedEarlier };
  } catch (e) {
    if (!(e instanceof DatasetError)) throw e;
    return { ...none, count: n, share: 1, error: e.message };
  }
}

function scriptsOf(text: string): string[] {
  const found = new Set<string>();
  for (const ch of text) {
    if (!LETTER.test(ch)) continue;
    found.add(SCRIPTS.find(([, re]) => re.test(ch))?.[0] ?? 'Other');
  }
  return [...found];
}

// A byte piece: SentencePiece's byte fallback `<0xE3>`, or a byte-level BPE token that is one non-ASCII byte
// (part of a character the vocabulary lacks whole).
function unknownTokens(tok: QualityTokenizer, encoded: readonly ArrayLike<number>[]): { count: number; share: number } {
  const unk = tok.specialTokens?.unk?.id;
  const memo = new Map<number, boolean>();
  const isUnknown = (id: number): boolean => {
    let v = memo.get(id);
    if (v === undefined) {
      const s = tok.idToToken?.(id);
      v = id === unk || (s !== undefined && (/^<0x[0-9A-Fa-f]{2}>$/.test(s) || ([...s].length === 1 && (unicodeToByte.get(s) ?? 0) >= 0x80)));
      memo.set(id, v);
    }
    return v;
  };
  let count = 0;
  let total = 0;
  for (const ids of encoded) {
    total += ids.length;
    for (let i = 0; i < ids.length; i++) if (isUnknown(ids[i])) count++;
  }
  return { count, share: total === 0 ? 0 : count / total };
}

// Words (runs of letters, marks, digits) encoded as they stand, with the space before them when there is one.
function fragmentedWords(tok: QualityTokenizer, texts: readonly string[], minPieces: number, examples: number): NonNullable<QualityFigures['tokenizer']>['fragmented'] {
  const pieces = new Map<string, number>();
  const seen = new Map<string, { count: number; pieces: number }>(); // by the word itself, with or without the space
  let words = 0;
  let count = 0;
  for (const t of texts) {
    for (const m of t.matchAll(WORD)) {
      const at = m.index ?? 0;
      const key = (at > 0 && t[at - 1] === ' ' ? ' ' : '') + m[0];
      let p = pieces.get(key);
      if (p === undefined) pieces.set(key, (p = tok.encode(key).length));
      words++;
      if (p >= minPieces) {
        count++;
        const w = seen.get(m[0]) ?? { count: 0, pieces: p };
        seen.set(m[0], { count: w.count + 1, pieces: Math.max(w.pieces, p) });
      }
    }
  }
  const top = [...seen].sort((a, b) => b[1].count - a[1].count || (a[0] < b[0] ? -1 : 1)).slice(0, examples).map(([word, w]) => ({ word, ...w }));
  return { count, share: words === 0 ? 0 : count / words, words, minPieces, top };
}

const round = (v: number) => +v.toFixed(1);

function snippet(text: string, max = 80): string {
  const s = normalizeText(text).replace(/\p{Cc}/gu, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
  return s.length > max ? `${s.slice(0, max)}…` : s;
}
