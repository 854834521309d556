/**
 * `Corpus`: an arquero table with fluent, seeded hygiene verbs that read like the task and return new
 * instances, each adding a line to a report of how many rows it removed and why.
 *
 * @example
 * const { train, validation, test } = Corpus.load('data/sft.jsonl', { skipBad: true })
 *   .filter((r) => !String(r.completion).includes('as an AI'), 'boilerplate answers')
 *   .lengthBetween('completion', 20, 2000)
 *   .dedupe('completion')
 *   .nearDedupe('completion', { threshold: 0.8 })
 *   .shuffle(1)
 *   .split({ train: 0.9, validation: 0.05, test: 0.05 }, 1);
 * console.log(train.formatReport());
 */
import * as path from 'path';
import { inspect } from 'util';
import * as aq from 'arquero';
import type { ColumnTable } from 'arquero';
import { Rng } from '../util/rng';
import { checkOptions } from '../util/options';
import { escapeHtml } from '../viz/html';
import { mimeBundleKey } from '../viz/display';
import { tableHtml } from '../viz/table';
import { FORMAT_FIELDS, type ColumnMapping } from './columns';
import { exactDuplicates, nearDuplicates, type NearDedupeOptions, type NormalizeOptions } from './dedupe';
import { detectFormat, formatProblem, validateDataset, type DatasetFormat, type DatasetProblem, type ValidateOptions } from './formats';
import { dataColumns, isProvenanceColumn, rowObjects, takeRows, toDataFrame, type DanfoModule, type DataFrameLike, type DataRow, type ToDataFrameOptions } from './frames';
import { loadTable, loadTableOptionKeys, mapColumns, toTable, type LoadTableOptions } from './load';
import { cellText } from './text';
import { qualityReport, type QualityOptions, type QualityReport } from './quality';

/** One line of a corpus report: a step, the rows it removed, the rows left, and why. */
export interface ReportEntry {
  step: string;
  removed: number;
  kept: number;
  reason: string;
}

/** Options of {@link Corpus.load}: reading (`LoadTableOptions`, the column mapping included), validation, a name. */
export type CorpusLoadOptions = LoadTableOptions & Omit<ValidateOptions, 'source'> & {
  /** Format to validate against; `'auto'` (default) detects it, `false` skips validation. */
  validate?: DatasetFormat | 'auto' | false;
  /** The corpus name (default: the file name without extension). */
  name?: string;
};

/** Every {@link CorpusLoadOptions} field, for the run-time check of option names. */
export const corpusLoadOptionKeys: readonly (keyof CorpusLoadOptions)[] = Object.freeze([...loadTableOptionKeys, 'skipBad', 'roles', 'validate', 'name']);

/** Anything a corpus can be made from. */
export type CorpusInput = Corpus<DataRow> | ColumnTable | DataFrameLike | readonly DataRow[] | Readonly<Record<string, readonly unknown[]>>;

/** Counts tokens for {@link Corpus.lengthBetween}; tunelab's `Tokenizer` fits. */
export interface TokenCounter {
  encode(text: string): ArrayLike<number>;
}

/** One ingredient of {@link Corpus.mix}. */
export interface MixPart {
  data: CorpusInput;
  /** Share of the mixture (weights are normalised to sum to 1). */
  weight: number;
  /** Value of the source column for these rows (default: the corpus name, else `dataset<k>`). */
  name?: string;
}

/** Options of {@link Corpus.mix}. */
export interface MixOptions {
  /**
   * Rows in the mixture. Default: the largest size that needs no repeats, min over parts of rows / weight.
   * A part asked for more rows than it has is repeated whole, then sampled for the rest (reported).
   */
  size?: number;
  seed?: number;
  /** Name of the column recording each row's part (default `source`). */
  sourceColumn?: string;
  /** Shuffle the mixture so the parts interleave (default true). */
  shuffle?: boolean;
}

/**
 * A dataset as an arquero table plus the report of the steps that made it. Verbs never change an instance;
 * they return a new one whose report has one more line. Rows read by `loadTable` keep their `__file`/`__row`
 * provenance through every verb, so later errors still name the source row.
 *
 * The arquero table is `corpus.table`: use it for any arquero verb (`corpus.table.groupby('source').count()`),
 * or {@link pipe} to keep the report. Printed (`console.log`, a notebook cell's last value) a corpus shows
 * its name, format, size, columns and report; in notebooks also a preview of its first rows.
 *
 * `R` types the rows that `filter` sees; it is not checked against the data.
 *
 * @example
 * const notes = Corpus.load('notes.csv', { text: 'body' });   // the "body" column is the text
 * notes.table.columnNames();                                  // ['text', '__file', '__row']
 */
export class Corpus<R extends DataRow = DataRow> {
  /** @param table the data; @param report the steps so far; @param name used by `mix` as the source value */
  constructor(
    /** The arquero table holding the rows (provenance columns `__file`/`__row` included). */
    readonly table: ColumnTable,
    readonly report: readonly ReportEntry[] = [],
    readonly name?: string,
    /** Rows dropped by validation (`skipBad`), with file, row, column and problem. */
    readonly problems: readonly DatasetProblem[] = [],
  ) {}

  /**
   * Wraps data already in memory (table, DataFrame, rows, columns, or a corpus, returned as is). A column
   * mapping renames the data's columns to the formats' (`{ text: 'body' }`, see `LoadTableOptions`).
   *
   * @example
   * const c = Corpus.from<{ text: string }>([{ text: 'a' }, { text: 'b' }]);
   * const qa = Corpus.from(df, { prompt: 'question', completion: 'answer' });
   */
  static from<T extends DataRow = DataRow>(data: CorpusInput, options: { name?: string } & ColumnMapping = {}): Corpus<T> {
    checkOptions(options, ['name', ...FORMAT_FIELDS], 'Corpus.from');
    if (data instanceof Corpus) return new Corpus<T>(mapColumns(data.table, options, data.name), data.report, options.name ?? data.name, data.problems);
    const table = toTable(data, options);
    return new Corpus<T>(table, [{ step: 'from', removed: 0, kept: table.numRows(), reason: 'data in memory' }], options.name);
  }

  /**
   * Loads a file or folder (see `loadTable`), then validates it against a dataset format (`'auto'` detects it;
   * `false` skips validation). With `skipBad`, unreadable and malformed rows are dropped, counted in the
   * report and listed in `problems`; otherwise the first one throws a `DatasetError` naming file, row and column.
   * Columns named otherwise than the formats' are mapped by option: `{ text: 'body' }`,
   * `{ prompt: 'question', completion: 'answer' }`, also `chosen`, `rejected`, `messages`.
   *
   * @example
   * const c = Corpus.load('data/sft.jsonl', { skipBad: true });
   * const notes = Corpus.load('notes.csv', { text: 'body' });
   * c.problems.forEach((p) => console.warn(formatProblem(p)));
   */
  static load<T extends DataRow = DataRow>(
    target: string,
    options: CorpusLoadOptions = {},
  ): Corpus<T> {
    checkOptions(options, corpusLoadOptionKeys, 'Corpus.load');
    const { validate, name: given, skipBad, roles, ...load } = options;
    // Unreadable lines are kept for validation, so the first bad row in file order is the one reported.
    const badRows = load.badRows ?? (validate === false ? 'throw' : 'keep');
    const table = loadTable(target, { ...load, badRows });
    const name = given ?? path.basename(target).replace(/\.[^.]*$/, '');
    const loaded = new Corpus<T>(table, [{ step: 'load', removed: 0, kept: table.numRows(), reason: target }], name);
    return validate === false ? loaded : loaded.validate(validate ?? 'auto', { skipBad, roles });
  }

  /**
   * Merges several datasets in given proportions into one with a `source` column: for multi-task training, or
   * replaying general data next to a new task. Each part gives a seeded sample of its rows; counts are exact
   * (largest remainder). Columns are the union; a part's missing columns are undefined.
   *
   * @example
   * const mixed = Corpus.mix([{ data: task, weight: 0.7 }, { data: general, weight: 0.3, name: 'replay' }], { seed: 1 });
   */
  static mix(parts: readonly MixPart[], options: MixOptions = {}): Corpus<DataRow> {
    checkOptions(options, ['size', 'seed', 'sourceColumn', 'shuffle'], 'mix');
    if (parts.length === 0) throw new Error('mix: no datasets given');
    const sourceColumn = options.sourceColumn ?? 'source';
    const seed = options.seed ?? 0;
    const corpora = parts.map((p) => Corpus.from(p.data));
    const names = parts.map((p, k) => p.name ?? corpora[k].name ?? `dataset${k + 1}`);
    if (new Set(names).size !== names.length) throw new Error(`mix: part names must differ (got ${names.join(', ')})`);
    const weights = parts.map((p) => p.weight);
    if (!weights.every((w) => w > 0 && Number.isFinite(w))) throw new Error(`mix: weights must be positive (got ${weights.join(', ')})`);
    const total = weights.reduce((a, b) => a + b, 0);
    const shares = weights.map((w) => w / total);
    corpora.forEach((c, k) => {
      if (c.size === 0) throw new Error(`mix: "${names[k]}" has no rows`);
      if (c.table.columnNames().includes(sourceColumn)) throw new Error(`mix: "${names[k]}" already has a "${sourceColumn}" column; pass another sourceColumn`);
    });
    const size = options.size ?? Math.min(...corpora.map((c, k) => Math.floor(c.size / shares[k] + 1e-9)));
    const counts = apportion(size, shares);

    const pieces: Record<string, unknown[]>[] = [];
    const report: ReportEntry[] = [];
    const lines: string[] = [];
    corpora.forEach((c, k) => {
      const idx = pickRows(c.size, counts[k], new Rng(seed + 7919 * (k + 1)));
      const columns: Record<string, unknown[]> = {};
      for (const col of c.table.columnNames()) {
        const values = c.table.array(col);
        columns[col] = Array.from(idx, (i) => values[i]);
      }
      columns[sourceColumn] = idx.map(() => names[k]);
      pieces.push(columns);
      for (const e of c.report) report.push({ ...e, step: `${names[k]}/${e.step}` });
      const how = counts[k] > c.size ? `repeated ×${(counts[k] / c.size).toFixed(2)}` : `of ${c.size}`;
      lines.push(`${names[k]} ${counts[k]} ${how} (weight ${shares[k].toFixed(3)})`);
    });
    const allColumns = [...new Set(pieces.flatMap((p) => Object.keys(p)))];
    const columns = Object.fromEntries(
      allColumns.map((col) => [col, pieces.flatMap((p, k) => p[col] ?? new Array<unknown>(counts[k]).fill(undefined))]),
    );
    let table = aq.table(columns);
    if (options.shuffle ?? true) table = takeRows(table, new Rng(seed).shuffle(range(size)));
    const inputRows = corpora.reduce((a, c) => a + c.size, 0);
    report.push({ step: 'mix', removed: Math.max(0, inputRows - size), kept: size, reason: lines.join('; ') });
    return new Corpus<DataRow>(table, report, undefined, corpora.flatMap((c) => c.problems));
  }

  /** Number of rows. */
  get size(): number {
    return this.table.numRows();
  }

  /** Data column names (provenance columns such as `__file`/`__row` left out). */
  get columns(): string[] {
    return dataColumns(this.table);
  }

  /** The rows as plain objects; provenance columns only with `{ provenance: true }`. */
  rows(options: { provenance?: boolean } = {}): R[] {
    checkOptions(options, ['provenance'], 'rows');
    const rows = rowObjects(this.table);
    if (options.provenance) return rows as R[];
    return rows.map((r) => Object.fromEntries(Object.entries(r).filter(([k]) => !isProvenanceColumn(k)))) as R[];
  }

  /**
   * Validates against a dataset format (see `validateDataset` in formats); with `skipBad`, drops and reports bad rows.
   *
   * @example
   * Corpus.from(rows).validate('prompt-completion', { skipBad: true }).problems;
   */
  validate(format: DatasetFormat | 'auto' = 'auto', options: ValidateOptions = {}): Corpus<R> {
    const result = validateDataset(this.table, format, options);
    const reason = result.problems.length ? summarizeProblems(result.problems) : `all rows are valid ${result.format}`;
    return this.next(result.table, 'validate', reason, [...this.problems, ...result.problems]);
  }

  /**
   * Keeps the rows for which `keep` returns true. Plain closures work (rows are plain objects, so unlike
   * arquero's expression strings the function may capture variables).
   *
   * @example
   * corpus.filter((r) => r.lang === wanted, 'other languages');
   */
  filter(keep: (row: R, index: number) => boolean, reason = 'filter'): Corpus<R> {
    const rows = rowObjects(this.table) as R[];
    const idx: number[] = [];
    rows.forEach((r, i) => {
      if (keep(r, i)) idx.push(i);
    });
    return this.keepRows(idx, 'filter', reason);
  }

  /**
   * Keeps rows whose `column` is between `min` and `max` long (inclusive): characters, or tokens when a
   * tokenizer is given. Message lists count the text of their contents joined by newlines.
   *
   * @example
   * corpus.lengthBetween('text', 20, 2000);
   * corpus.lengthBetween('text', 8, 512, { tokenizer: tok });
   */
  lengthBetween(column: string, min: number, max: number, options: { tokenizer?: TokenCounter } = {}): Corpus<R> {
    checkOptions(options, ['tokenizer'], 'lengthBetween');
    this.requireColumn(column);
    const unit = options.tokenizer ? 'tokens' : 'chars';
    const values = this.table.array(column);
    const idx: number[] = [];
    let short = 0;
    let long = 0;
    for (let i = 0; i < values.length; i++) {
      const text = cellText(values[i]);
      const len = options.tokenizer ? options.tokenizer.encode(text).length : text.length;
      if (len < min) short++;
      else if (len > max) long++;
      else idx.push(i);
    }
    return this.keepRows(idx, 'lengthBetween', `"${column}" outside [${min}, ${max}] ${unit}: ${short} shorter, ${long} longer`);
  }

  /**
   * Removes exact duplicates of one column or of a combination of columns, keeping the first occurrence.
   * Whitespace is collapsed by default; `ignoreCase` also folds case.
   *
   * @example
   * corpus.dedupe('text');
   * corpus.dedupe(['prompt', 'completion'], { ignoreCase: true });
   */
  dedupe(columns: string | readonly string[], options: NormalizeOptions = {}): Corpus<R> {
    checkOptions(options, ['ignoreWhitespace', 'ignoreCase'], 'dedupe');
    const cols = typeof columns === 'string' ? [columns] : [...columns];
    cols.forEach((c) => this.requireColumn(c));
    const arrays = cols.map((c) => this.table.array(c));
    // \u0000 joins columns so that ("a b", "c") and ("a", "b c") stay different keys.
    const keys = Array.from({ length: this.size }, (_, i) => arrays.map((a) => cellText(a[i])).join('\u0000'));
    const { duplicateOf } = exactDuplicates(keys, options);
    const how = [(options.ignoreWhitespace ?? true) && 'whitespace collapsed', options.ignoreCase && 'case ignored'].filter(Boolean).join(', ');
    return this.keepRows(indicesWhere(duplicateOf, -1), 'dedupe', `exact duplicates of ${cols.map((c) => `"${c}"`).join(' + ')}${how ? ` (${how})` : ''}`);
  }

  /**
   * Removes near duplicates of a column by MinHash + LSH over character or word shingles, keeping the first
   * of each group (see `nearDuplicates` in dedupe). Deterministic for a seed.
   *
   * @example
   * corpus.nearDedupe('text', { threshold: 0.8, shingle: 'word', n: 3, seed: 1 });
   */
  nearDedupe(column: string, options: NearDedupeOptions = {}): Corpus<R> {
    checkOptions(options, ['threshold', 'shingle', 'n', 'numPerm', 'bands', 'seed', 'ignoreCase'], 'nearDedupe');
    this.requireColumn(column);
    const texts = Array.from(this.table.array(column), cellText);
    const found = nearDuplicates(texts, options);
    const unit = options.shingle ?? 'char';
    const n = options.n ?? (unit === 'char' ? 5 : 3);
    const reason =
      `near duplicates of "${column}" (Jaccard ≥ ${options.threshold ?? 0.8} over ${n}-${unit} shingles, ` +
      `MinHash ${options.numPerm ?? 128} perms, LSH ${found.bands}×${found.rows}, seed ${options.seed ?? 0})`;
    return this.keepRows(indicesWhere(found.duplicateOf, -1), 'nearDedupe', reason);
  }

  /**
   * Puts the rows in a seeded random order (Fisher–Yates); the same seed gives the same order.
   *
   * @example
   * corpus.shuffle(42);
   */
  shuffle(seed = 0): Corpus<R> {
    return this.next(takeRows(this.table, new Rng(seed).shuffle(range(this.size))), 'shuffle', `seed ${seed}`);
  }

  /**
   * A seeded random sample without replacement, in the original row order: `n` rows when `n ≥ 1`, else that
   * fraction of the rows (rounded). Asking for more rows than there are throws.
   *
   * @example
   * corpus.sample(100, 1);    // 100 rows
   * corpus.sample(0.1, 1);    // 10 %
   */
  sample(n: number, seed = 0): Corpus<R> {
    const count = n >= 1 ? Math.floor(n) : Math.round(n * this.size);
    if (!(n > 0) || count > this.size) throw new Error(`sample: cannot take ${n} of ${this.size} rows`);
    const idx = new Rng(seed).shuffle(range(this.size)).slice(0, count).sort((a, b) => a - b);
    return this.keepRows(idx, 'sample', `random sample of ${count} rows (seed ${seed})`);
  }

  /**
   * Splits into disjoint named parts whose sizes are exact (largest remainder, summing to the row count),
   * after a seeded shuffle unless `shuffle: false` (then parts are consecutive, e.g. for time order).
   *
   * @example
   * const { train, validation, test } = corpus.split({ train: 0.9, validation: 0.05, test: 0.05 }, 1);
   */
  split<K extends string>(shares: Readonly<Record<K, number>>, seed = 0, options: { shuffle?: boolean } = {}): Record<K, Corpus<R>> {
    checkOptions(options, ['shuffle'], 'split');
    const names = Object.keys(shares) as K[];
    const fractions = names.map((k) => shares[k]);
    const sum = fractions.reduce((a, b) => a + b, 0);
    if (names.length === 0 || !fractions.every((f) => f >= 0) || Math.abs(sum - 1) > 1e-6) {
      throw new Error(`split: shares must be non-negative and sum to 1 (got ${names.map((k) => `${k}: ${shares[k]}`).join(', ')})`);
    }
    const counts = apportion(this.size, fractions);
    const order = options.shuffle ?? true ? new Rng(seed).shuffle(range(this.size)) : range(this.size);
    const out = {} as Record<K, Corpus<R>>;
    let start = 0;
    names.forEach((k, j) => {
      const idx = order.slice(start, start + counts[j]);
      start += counts[j];
      out[k] = this.next(takeRows(this.table, idx), `split:${k}`, `share ${fractions[j]} of ${this.size} rows${options.shuffle ?? true ? ` (seed ${seed})` : ''}`);
    });
    return out;
  }

  /**
   * Applies any arquero verb chain and reports the change in rows under `step`.
   *
   * @example
   * corpus.pipe((t) => t.filter((d) => d.lang === 'en'), 'english only');
   */
  pipe(fn: (table: ColumnTable) => ColumnTable, reason = 'pipe'): Corpus<R> {
    return this.next(fn(this.table), 'pipe', reason);
  }

  /**
   * The data as a danfo DataFrame of the module you pass (`danfojs-node` or `danfojs`); message lists
   * become JSON text (see `toDataFrame` in frames).
   *
   * @example
   * corpus.toDataFrame(require('danfojs-node')).head().print();
   */
  toDataFrame<D>(dfd: DanfoModule<D>, options: ToDataFrameOptions = {}): D {
    return toDataFrame(this.table, dfd, options);
  }

  /**
   * The data-quality report (duplicates, near duplicates, lengths, charset anomalies, format errors and,
   * with a tokenizer, unseen words) without removing anything; see `qualityReport` in quality. Named
   * `quality` because `report` holds the steps.
   *
   * @example
   * corpus.quality({ tokenizer: tok }).table().print();
   */
  quality(options: QualityOptions = {}): QualityReport {
    return qualityReport(this as Corpus, options);
  }

  /** The report as an arquero table, e.g. `corpus.reportTable().print()`. */
  reportTable(): ColumnTable {
    return aq.table({
      step: this.report.map((e) => e.step),
      removed: this.report.map((e) => e.removed),
      kept: this.report.map((e) => e.kept),
      reason: this.report.map((e) => e.reason),
    });
  }

  /** The report as aligned plain text. */
  formatReport(): string {
    return formatReport(this.report);
  }

  /**
   * A few lines about the corpus: name, rows, format, columns, the report, and how many bad rows were dropped.
   * This is what `console.log(corpus)` and a notebook's text output show.
   *
   * @example
   * console.log(Corpus.load('notes.csv', { text: 'body' }).summary());
   * // Corpus "notes": 120 rows, format text, columns: text
   * // step      removed  kept  reason
   * // …
   */
  summary(): string {
    const lines = [`${this.headline()}, columns: ${this.columns.join(', ') || '(none)'}`, formatReport(this.report)];
    if (this.problems.length) lines.push(`${this.problems.length} malformed row${this.problems.length === 1 ? '' : 's'} dropped: see .problems`);
    return lines.join('\n');
  }

  /** `console.log(corpus)` prints {@link summary}, not the arquero internals. */
  [inspect.custom](): string {
    return this.summary();
  }

  /** Notebook output: the summary, a preview of the first rows and the report as HTML tables. */
  [mimeBundleKey](): { 'text/plain': string; 'text/html': string } {
    const preview = tableHtml(this.table, { columns: this.columns, limit: 5, maxChars: 120 });
    const report = tableHtml(this.reportTable(), { limit: 50 });
    const dropped = this.problems.length ? `<div>${this.problems.length} malformed rows dropped: see <code>.problems</code></div>` : '';
    const html = `<div class="tunelab-corpus"><div style="font-weight:bold;margin-bottom:4px">${escapeHtml(this.headline())}</div>` +
      `${preview}<details style="margin-top:4px"><summary>report (${this.report.length} steps)</summary>${report}</details>${dropped}</div>`;
    return { 'text/plain': this.summary(), 'text/html': html };
  }

  // `Corpus "notes": 120 rows, format text` (the format detected from the columns, if any).
  private headline(): string {
    let format: string;
    try {
      format = `format ${detectFormat(this.table)}`;
    } catch {
      format = 'no dataset format';
    }
    const name = this.name === undefined ? 'Corpus' : `Corpus ${JSON.stringify(this.name)}`;
    return `${name}: ${this.size.toLocaleString('en-US')} row${this.size === 1 ? '' : 's'}, ${format}`;
  }

  private requireColumn(column: string): void {
    if (!this.table.columnNames().includes(column)) throw new Error(`no column "${column}" (columns: ${this.columns.join(', ')})`);
  }

  private keepRows(idx: number[], step: string, reason: string): Corpus<R> {
    return this.next(idx.length === this.size ? this.table : takeRows(this.table, idx), step, reason);
  }

  private next(table: ColumnTable, step: string, reason: string, problems: readonly DatasetProblem[] = this.problems): Corpus<R> {
    const kept = table.numRows();
    return new Corpus<R>(table, [...this.report, { step, removed: Math.max(0, this.size - kept), kept, reason }], this.name, problems);
  }
}

/**
 * A report as an aligned text table.
 *
 * @example
 * console.log(formatReport(corpus.report));
 * // step      removed  kept  reason
 * // load            0   120  data/sft.jsonl
 * // dedupe          7   113  exact duplicates of "text" (whitespace collapsed)
 */
export function formatReport(report: readonly ReportEntry[]): string {
  const rows = [['step', 'removed', 'kept', 'reason'], ...report.map((e) => [e.step, String(e.removed), String(e.kept), e.reason])];
  const widths = [0, 1, 2].map((c) => Math.max(...rows.map((r) => r[c].length)));
  return rows
    .map((r) => [r[0].padEnd(widths[0]), r[1].padStart(widths[1]), r[2].padStart(widths[2]), r[3]].join('  '))
    .join('\n');
}


// "2 × column "completion": empty string; 1 × bad JSON …", most frequent first.
function summarizeProblems(problems: readonly DatasetProblem[]): string {
  const counts = new Map<string, number>();
  for (const p of problems) {
    const key = formatProblem({ column: p.column, problem: p.problem.replace(/^bad JSON: .*/, 'bad JSON') }).replace(/^: /, '');
    counts.set(key, (counts.get(key) ?? 0) + 1);
  }
  return [...counts].sort((a, b) => b[1] - a[1]).map(([k, n]) => `${n} × ${k}`).join('; ');
}

// Largest-remainder apportionment: integer counts proportional to shares that sum exactly to total.
function apportion(total: number, shares: readonly number[]): number[] {
  const sum = shares.reduce((a, b) => a + b, 0);
  const exact = shares.map((s) => (total * s) / sum);
  const counts = exact.map(Math.floor);
  const order = exact.map((x, i) => ({ i, frac: x - Math.floor(x) })).sort((a, b) => b.frac - a.frac || a.i - b.i);
  let left = total - counts.reduce((a, b) => a + b, 0); // fewer than shares.length
  for (let k = 0; left > 0; k++, left--) counts[order[k].i]++;
  return counts;
}

// `count` row indices of `n`: whole passes when count > n, then a seeded sample of the rest.
function pickRows(n: number, count: number, rng: Rng): number[] {
  const out: number[] = [];
  for (let pass = 0; pass < Math.floor(count / n); pass++) out.push(...range(n));
  out.push(...rng.shuffle(range(n)).slice(0, count % n).sort((a, b) => a - b));
  return out;
}

function range(n: number): number[] {
  return Array.from({ length: n }, (_, i) => i);
}

function indicesWhere(values: readonly number[], equal: number): number[] {
  const out: number[] = [];
  values.forEach((v, i) => {
    if (v === equal) out.push(i);
  });
  return out;
}
