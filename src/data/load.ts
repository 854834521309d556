/**
 * Loading datasets into arquero tables: CSV, TSV, JSON, JSONL, Arrow IPC and plain-text files or folders, plus
 * tables, DataFrames and arrays already in memory (`toTable`). Every loader takes a column mapping
 * (`{ text: 'body' }`) that renames the user's columns to the formats' names.
 *
 * Every row read from a file carries its file (`__file`) and its row number (`__row`), so errors raised
 * later, after filtering, shuffling or mixing, still point into the right file. DataRow numbers are the file's:
 * - CSV/TSV: the 1-based line on which the record starts (the header is line 1, so the first data row is
 *   2; a quoted field spanning lines counts every line, blank lines are skipped but counted);
 * - JSONL: the 1-based line (blank lines skipped but counted);
 * - JSON and Arrow: the 1-based position of the record in the array (or in the column arrays, or the Arrow table);
 * - text: 1 for a whole file; with `separator`, the 1-based line on which the chunk's text starts.
 *
 * Reading is synchronous (`fs.readFileSync`); source files are only read, never written. Text formats must be
 * UTF-8: other bytes are refused with the file, line and byte offset rather than read as `\uFFFD`.
 */
import * as fs from 'fs';
import * as path from 'path';
import * as aq from 'arquero';
import type { ColumnTable } from 'arquero';
import { readTextCorpus, readUtf8 } from './text';
import { DatasetError } from './formats';
import { FORMAT_FIELDS, columnMapping, type ColumnMapping } from './columns';
import { checkOptions } from '../util/options';
import {
  ERROR_COLUMN,
  FILE_COLUMN,
  ROW_COLUMN,
  dataColumns,
  decodeJsonColumns,
  fromDataFrame,
  isArqueroTable,
  isDataFrame,
  type DataFrameLike,
  type DataRow,
} from './frames';

/** File formats that {@link loadTable} reads. */
export type FileFormat = 'csv' | 'tsv' | 'json' | 'jsonl' | 'arrow' | 'text';

/**
 * Options of {@link loadTable} and {@link parseDataset}. The column mapping (`text`, `prompt`, `completion`,
 * `chosen`, `rejected`, `messages`) names the file's column that holds each format field, e.g.
 * `{ text: 'body' }`; the column is renamed to the field's name.
 */
export interface LoadTableOptions extends ColumnMapping {
  /**
   * File format; by default from the extension (`.csv`, `.tsv`, `.json`, `.jsonl`/`.ndjson`,
   * `.arrow`/`.feather`/`.arrows`/`.ipc` (Arrow IPC), `.txt`/`.md`; folders are text).
   */
  format?: FileFormat;
  /**
   * What to do with a row that cannot be read (a bad JSON line, a JSON value that is not an object, a CSV
   * record with more fields than the header): `'throw'` (default) raises a {@link DatasetError} naming the
   * file and row; `'keep'` keeps the row with its columns empty and the reason in `__error`, so that
   * `validateDataset(..., { skipBad: true })` drops and reports it with the other bad rows.
   */
  badRows?: 'throw' | 'keep';
  /** Add the `__file` and `__row` provenance columns (default true). */
  provenance?: boolean;
  /**
   * CSV/TSV cells holding JSON to decode (e.g. a `messages` column): `'auto'` (default) decodes a column when
   * every non-empty cell is a JSON object or list of objects; a list names the columns; `false` keeps text.
   * Other cells stay strings: no number or date inference, so `"007"` stays `"007"`.
   */
  json?: 'auto' | string[] | false;
  /** Text only: split each file into several documents on this separator (chunks are trimmed, empty ones dropped). */
  separator?: string | RegExp;
}

/** Every {@link LoadTableOptions} field, for the run-time check of option names. */
export const loadTableOptionKeys: readonly (keyof LoadTableOptions)[] = Object.freeze(['format', 'badRows', 'provenance', 'json', 'separator', ...FORMAT_FIELDS]);

/**
 * Loads a dataset file (or a folder of `.txt`/`.md` files) into an arquero table.
 *
 * JSON may be an array of objects or an object of equally long column arrays. Text gives one `text` column:
 * one document per file, or per chunk with `separator`. Rows carry `__file` and `__row` (see the module
 * notes for the row-number convention).
 *
 * @example
 * const sft = loadTable('data/sft.jsonl');                          // columns prompt, completion, __file, __row
 * const docs = loadTable('data/books', { separator: '\n\n\n' });    // folder of .txt, split into chapters
 * const raw = loadTable('data/sft.jsonl', { badRows: 'keep' });     // bad lines kept for validateDataset({ skipBad })
 * const notes = loadTable('notes.csv', { text: 'body' });           // the "body" column becomes "text"
 */
export function loadTable(target: string, options: LoadTableOptions = {}): ColumnTable {
  checkOptions(options, loadTableOptionKeys, 'loadTable');
  let stat: fs.Stats;
  try {
    stat = fs.statSync(target);
  } catch {
    throw new Error(`${target}: no such file or folder`);
  }
  const format = options.format ?? (stat.isDirectory() ? 'text' : formatFromExtension(target));
  if (format !== 'text' && stat.isDirectory()) throw new Error(`${target}: is a folder; only the text format reads folders`);
  const table = format === 'text' ? loadText(target, options)
    : format === 'arrow' ? loadArrow(target, options)
      : parseRecords(readUtf8(target), format, target, options);
  return mapColumns(table, options, target);
}

/**
 * The documents of a text file or folder as strings: one per file, or per chunk between `separator`s
 * (escape sequences such as `\n` in a separator given on a command line are decoded).
 *
 * @example
 * const docs = textDocuments('datasets/general/heldout.txt', '\n\n\n');
 */
export function textDocuments(target: string, separator?: string): string[] {
  const sep = separator === undefined ? undefined : separator.replace(/\\n/g, '\n').replace(/\\t/g, '\t');
  return loadTable(target, { format: 'text', separator: sep }).array('text') as string[];
}

/** The file format an extension stands for; throws for an unknown one. */
export function formatFromExtension(file: string): FileFormat {
  const ext = path.extname(file).toLowerCase();
  switch (ext) {
    case '.csv':
      return 'csv';
    case '.tsv':
    case '.tab':
      return 'tsv';
    case '.json':
      return 'json';
    case '.jsonl':
    case '.ndjson':
      return 'jsonl';
    case '.arrow':
    case '.arrows':
    case '.feather':
    case '.ipc':
      return 'arrow';
    case '.txt':
    case '.md':
      return 'text';
    case '.parquet':
    case '.pq':
      throw new Error(
        `${file}: Parquet is not read here (arquero, tunelab's table library, reads Arrow IPC but not Parquet); ` +
          "convert it to Arrow IPC (pyarrow: pyarrow.feather.write_feather(pq.read_table(f), 'x.arrow', compression='uncompressed'); " +
          "pandas: df.to_feather('x.arrow', compression='uncompressed')) or to CSV/JSONL",
      );
    default:
      throw new Error(`${file}: cannot tell the format from the extension "${ext}"; pass { format: 'csv' | 'tsv' | 'json' | 'jsonl' | 'arrow' | 'text' }`);
  }
}

/**
 * Parses dataset text already in memory; `file` names it in errors and in `__file`.
 *
 * @example
 * parseDataset('{"text": "hi"}\n', 'jsonl', { file: 'inline.jsonl' }).numRows();   // 1
 */
export function parseDataset(text: string, format: Exclude<FileFormat, 'text' | 'arrow'>, options: LoadTableOptions & { file?: string } = {}): ColumnTable {
  checkOptions(options, [...loadTableOptionKeys, 'file'], 'parseDataset');
  const file = options.file ?? `<${format}>`;
  return mapColumns(parseRecords(text, format, file, options), options, file);
}

function parseRecords(text: string, format: Exclude<FileFormat, 'text' | 'arrow'>, file: string, options: LoadTableOptions): ColumnTable {
  const delimited = format === 'csv' || format === 'tsv';
  const { records, header } = delimited
    ? parseDelimited(text, format === 'csv' ? ',' : '\t', file)
    : format === 'jsonl'
      ? { records: parseJsonLines(text), header: [] }
      : parseJsonDocument(text, file);
  return buildTable(records, header, file, options, delimited);
}

/**
 * Turns data already in memory into an arquero table: an arquero table (returned as is), a danfo DataFrame
 * (message lists stored as JSON text are decoded), an array of row objects, or an object of column arrays.
 * A column mapping renames the user's columns to the formats' (see {@link LoadTableOptions}).
 *
 * @example
 * toTable([{ text: 'a' }, { text: 'b' }]).numRows();                 // 2
 * toTable(new dfd.DataFrame({ prompt: ['2+2='], completion: ['4'] }));
 * toTable(aq.table({ body: ['a'] }), { text: 'body' }).columnNames();   // ['text']
 */
export function toTable(x: ColumnTable | DataFrameLike | readonly object[] | Readonly<Record<string, readonly unknown[]>>, mapping: ColumnMapping = {}): ColumnTable {
  return mapColumns(unmappedTable(x), mapping, isArqueroTable(x) ? '<arquero table>' : isDataFrame(x) ? '<DataFrame>' : '<data>');
}

function unmappedTable(x: ColumnTable | DataFrameLike | readonly object[] | Readonly<Record<string, readonly unknown[]>>): ColumnTable {
  if (isArqueroTable(x)) return x;
  if (isDataFrame(x)) return fromDataFrame(x);
  if (Array.isArray(x)) {
    const rows: DataRow[] = x.map((r, i) => {
      if (!isPlainObject(r)) throw new Error(`toTable: item ${i + 1} is not an object`);
      return r as DataRow;
    });
    return aq.table(columnsOf(rows));
  }
  if (isPlainObject(x) && Object.values(x).every(Array.isArray)) return aq.table(columnArrays(x as Record<string, unknown[]>, 'toTable'));
  throw new Error('toTable: expected an arquero table, a danfo DataFrame, an array of objects or an object of column arrays');
}

/**
 * Renames the mapped columns to the format's names; `source` names the data in errors. A mapped column that
 * does not exist, one mapped twice, or a rename onto a column that already exists throws, naming the columns.
 *
 * @example
 * mapColumns(aq.table({ body: ['hi'] }), { text: 'body' }).columnNames();   // ['text']
 */
export function mapColumns(table: ColumnTable, mapping: ColumnMapping, source = '<table>'): ColumnTable {
  const m = columnMapping(mapping);
  const names = table.columnNames();
  const renames: Record<string, string> = {};
  for (const f of FORMAT_FIELDS) {
    const c = m[f];
    if (c === undefined || c === f) continue;
    if (!names.includes(c)) throw new DatasetError({ file: source, column: c, problem: `not found for option { ${f}: '${c}' } (columns: ${dataColumns(table).join(', ')})` });
    if (renames[c] !== undefined) throw new DatasetError({ file: source, column: c, problem: `mapped twice ({ ${renames[c]}: '${c}' } and { ${f}: '${c}' })` });
    renames[c] = f;
  }
  for (const [c, f] of Object.entries(renames)) {
    // A column named like the target is fine only if it is itself mapped away (a swap).
    if (names.includes(f) && renames[f] === undefined) {
      throw new DatasetError({ file: source, column: f, problem: `already exists, so { ${f}: '${c}' } would replace it; drop or rename it first` });
    }
  }
  return Object.keys(renames).length ? table.rename(renames) : table;
}

// One parsed record: its row number, its values or why it could not be read.
interface RawRecord {
  row: number;
  values?: DataRow;
  error?: string;
}

// `header` lists columns that exist even when no row has a value (CSV headers).
function buildTable(records: RawRecord[], header: readonly string[], file: string, options: LoadTableOptions, delimited: boolean): ColumnTable {
  const bad = records.find((r) => r.error !== undefined);
  if (bad && (options.badRows ?? 'throw') === 'throw') throw new DatasetError({ file, row: bad.row, problem: bad.error ?? '' });
  const columns = columnsOf(records.map((r) => r.values ?? {}), header);
  if (delimited) decodeJsonColumns(columns, options.json ?? 'auto');
  if (options.provenance ?? true) {
    columns[FILE_COLUMN] = records.map(() => file);
    columns[ROW_COLUMN] = records.map((r) => r.row);
  }
  if (bad) columns[ERROR_COLUMN] = records.map((r) => r.error);
  return aq.table(columns);
}

// Column arrays from row objects: columns in order of first appearance, absent keys as undefined.
function columnsOf(rows: readonly DataRow[], names: readonly string[] = []): Record<string, unknown[]> {
  const columns: Record<string, unknown[]> = {};
  for (const name of names) columns[name] = new Array(rows.length).fill(undefined);
  rows.forEach((row, i) => {
    for (const key of Object.keys(row)) {
      if (!(key in columns)) columns[key] = new Array(rows.length).fill(undefined);
      columns[key][i] = row[key];
    }
  });
  return columns;
}

function columnArrays(obj: Record<string, unknown[]>, where: string): Record<string, unknown[]> {
  const entries = Object.entries(obj);
  for (const [name, values] of entries) {
    if (values.length !== entries[0][1].length) {
      throw new Error(`${where}: column "${name}" has ${values.length} values but "${entries[0][0]}" has ${entries[0][1].length}`);
    }
  }
  return Object.fromEntries(entries.map(([name, values]) => [name, Array.from(values)]));
}

function isPlainObject(x: unknown): x is DataRow {
  return typeof x === 'object' && x !== null && !Array.isArray(x);
}

function describe(x: unknown): string {
  return x === null ? 'null' : Array.isArray(x) ? 'array' : typeof x;
}

function parseJsonLines(text: string): RawRecord[] {
  const records: RawRecord[] = [];
  const lines = text.replace(/^\uFEFF/, '').split('\n');
  lines.forEach((raw, i) => {
    const line = raw.endsWith('\r') ? raw.slice(0, -1) : raw;
    if (line.trim() === '') return;
    let value: unknown;
    try {
      value = JSON.parse(line);
    } catch (e) {
      records.push({ row: i + 1, error: `bad JSON: ${(e as Error).message}` });
      return;
    }
    if (isPlainObject(value)) records.push({ row: i + 1, values: value });
    else records.push({ row: i + 1, error: `expected a JSON object, got ${describe(value)}` });
  });
  return records;
}

function parseJsonDocument(text: string, file: string): { records: RawRecord[]; header: string[] } {
  let doc: unknown;
  try {
    doc = JSON.parse(text.replace(/^\uFEFF/, ''));
  } catch (e) {
    throw new Error(`${file}: bad JSON: ${(e as Error).message}`);
  }
  if (Array.isArray(doc)) {
    const records = doc.map((value, i): RawRecord =>
      isPlainObject(value) ? { row: i + 1, values: value } : { row: i + 1, error: `expected a JSON object, got ${describe(value)}` },
    );
    return { records, header: [] };
  }
  if (isPlainObject(doc) && Object.keys(doc).length > 0 && Object.values(doc).every(Array.isArray)) {
    const columns = columnArrays(doc as Record<string, unknown[]>, file);
    const n = Object.values(columns)[0].length;
    const records = Array.from({ length: n }, (_, i) => ({
      row: i + 1,
      values: Object.fromEntries(Object.entries(columns).map(([name, values]) => [name, values[i]])),
    }));
    return { records, header: Object.keys(columns) };
  }
  throw new Error(`${file}: expected an array of objects or an object of column arrays, got ${describe(doc)}`);
}

/**
 * RFC 4180 records with the line each starts on: quoted fields may hold delimiters, newlines and doubled
 * quotes. Written here rather than arquero's fromCSV because errors must name the file's line numbers.
 */
function parseDelimited(text: string, delimiter: string, file: string): { records: RawRecord[]; header: string[] } {
  const n = text.length;
  let i = text.charCodeAt(0) === 0xfeff ? 1 : 0;
  let line = 1;
  const raw: { row: number; fields: string[]; error?: string }[] = [];
  const atEol = (k: number) => k >= n || text[k] === '\n' || text[k] === '\r';
  while (i < n) {
    const row = line;
    const fields: string[] = [];
    let error: string | undefined;
    let quotedAny = false;
    for (;;) {
      let field = '';
      if (text[i] === '"') {
        quotedAny = true;
        i++;
        for (;;) {
          const close = text.indexOf('"', i);
          if (close < 0) throw new DatasetError({ file, row, problem: `unterminated quoted field ${fields.length + 1}` });
          const chunk = text.slice(i, close);
          for (let k = chunk.indexOf('\n'); k >= 0; k = chunk.indexOf('\n', k + 1)) line++;
          field += chunk;
          i = close + 1;
          if (text[i] === '"') {
            field += '"';
            i++;
          } else break;
        }
        const start = i;
        while (!atEol(i) && text[i] !== delimiter) i++;
        if (i > start) error ??= `text after the closing quote of field ${fields.length + 1}`;
      } else {
        const start = i;
        while (!atEol(i) && text[i] !== delimiter) i++;
        field = text.slice(start, i);
      }
      fields.push(field);
      if (i < n && text[i] === delimiter) {
        i++;
        continue;
      }
      if (text[i] === '\r') i++;
      if (text[i] === '\n') i++;
      line++;
      break;
    }
    const blank = fields.length === 1 && fields[0] === '' && !quotedAny;
    if (!blank) raw.push({ row, fields, error });
  }
  if (raw.length === 0) throw new Error(`${file}: empty file (no header)`);
  const header = raw[0].fields.map((name, k) => name.trim() || `column${k + 1}`);
  const dup = header.find((name, k) => header.indexOf(name) !== k);
  if (dup !== undefined) throw new DatasetError({ file, row: raw[0].row, problem: `column "${dup}" appears twice in the header` });
  if (raw[0].error) throw new DatasetError({ file, row: raw[0].row, problem: raw[0].error });
  const records = raw.slice(1).map(({ row, fields, error }): RawRecord => {
    if (error) return { row, error };
    if (fields.length > header.length) return { row, error: `${fields.length} fields but the header has ${header.length}` };
    // Fewer fields than the header leave those columns undefined, which validation reports as missing.
    return { row, values: Object.fromEntries(fields.map((v, k) => [header[k], v])) };
  });
  return { records, header };
}

// ---- Arrow ----

// Arrow IPC (file or stream) through arquero's reader; rows are numbered by position.
function loadArrow(file: string, options: LoadTableOptions): ColumnTable {
  let table: ColumnTable;
  try {
    table = aq.fromArrow(fs.readFileSync(file));
  } catch (e) {
    throw new Error(`${file}: not a readable Arrow IPC file (${(e as Error).message})`);
  }
  if (!(options.provenance ?? true)) return table;
  const n = table.numRows();
  return table.assign({ [FILE_COLUMN]: new Array<string>(n).fill(file), [ROW_COLUMN]: Array.from({ length: n }, (_, i) => i + 1) });
}

// ---- text ----

function loadText(target: string, options: LoadTableOptions): ColumnTable {
  const records: { file: string; row: number; text: string }[] = [];
  for (const doc of readTextCorpus(target)) {
    if (options.separator === undefined) records.push({ file: doc.source, row: 1, text: doc.text });
    else for (const chunk of splitWithLines(doc.text, options.separator)) records.push({ file: doc.source, ...chunk });
  }
  const columns: Record<string, unknown[]> = { text: records.map((r) => r.text) };
  if (options.provenance ?? true) {
    columns[FILE_COLUMN] = records.map((r) => r.file);
    columns[ROW_COLUMN] = records.map((r) => r.row);
  }
  return aq.table(columns);
}

// Trimmed non-empty chunks between separators, each with the 1-based line its text starts on.
function splitWithLines(text: string, separator: string | RegExp): { row: number; text: string }[] {
  const pieces: { start: number; end: number }[] = [];
  let pos = 0;
  if (typeof separator === 'string') {
    if (separator === '') throw new Error('separator must not be empty');
    for (let k = text.indexOf(separator); k >= 0; k = text.indexOf(separator, pos)) {
      pieces.push({ start: pos, end: k });
      pos = k + separator.length;
    }
  } else {
    const re = new RegExp(separator.source, separator.flags.includes('g') ? separator.flags : separator.flags + 'g');
    for (const m of text.matchAll(re)) {
      if (m[0] === '' || m.index === undefined) continue; // a zero-width match separates nothing
      pieces.push({ start: pos, end: m.index });
      pos = m.index + m[0].length;
    }
  }
  pieces.push({ start: pos, end: text.length });
  const out: { row: number; text: string }[] = [];
  let line = 1;
  let counted = 0; // newlines counted up to this offset; pieces come in order, so counting is linear
  for (const { start, end } of pieces) {
    const body = text.slice(start, end);
    const trimmed = body.trim();
    if (trimmed === '') continue;
    const first = start + body.indexOf(trimmed);
    for (let k = text.indexOf('\n', counted); k >= 0 && k < first; k = text.indexOf('\n', k + 1)) line++;
    counted = first;
    out.push({ row: line, text: trimmed });
  }
  return out;
}
