/**
 * Tables and data frames: the provenance columns that loaders add, small row-level helpers over arquero
 * tables, and conversion to and from danfo DataFrames.
 *
 * tunelab never requires danfo: callers pass their own module (`danfojs-node` or `danfojs`) and a DataFrame
 * is recognised by its shape (duck typing), so both builds work and neither is a dependency.
 */
import * as aq from 'arquero';
import type { ColumnTable } from 'arquero';

/** A table row as a plain object. */
export type DataRow = Record<string, unknown>;

/**
 * Column that loaders fill with the file a row came from, so errors and reports can name it after rows
 * have been filtered, shuffled or mixed. Columns whose names start with `__` are provenance, not data.
 */
export const FILE_COLUMN = '__file';
/** Column that loaders fill with the row's number in its file (see `loadTable` for the convention per format). */
export const ROW_COLUMN = '__row';
/** Column holding why a row could not be read (bad JSON line, extra CSV fields); only with `badRows: 'keep'`. */
export const ERROR_COLUMN = '__error';

/** True for provenance columns (`__file`, `__row`, `__error`, any `__` name). */
export function isProvenanceColumn(name: string): boolean {
  return name.startsWith('__');
}

/**
 * The data columns of a table: every column but the provenance ones.
 *
 * @example
 * dataColumns(loadTable('sft.jsonl'));   // ['prompt', 'completion']
 */
export function dataColumns(table: ColumnTable): string[] {
  return table.columnNames().filter((name) => !isProvenanceColumn(name));
}

/** True when `x` looks like an arquero table (checked by methods, so tables of another arquero copy pass). */
export function isArqueroTable(x: unknown): x is ColumnTable {
  if (typeof x !== 'object' || x === null) return false;
  const t = x as Partial<Record<'columnNames' | 'numRows' | 'array', unknown>>;
  return typeof t.columnNames === 'function' && typeof t.numRows === 'function' && typeof t.array === 'function';
}

/** What tunelab uses of a danfo DataFrame; both danfojs and danfojs-node satisfy it. */
export interface DataFrameLike {
  readonly columns: string[];
  readonly shape: number[];
  column(name: string): { readonly values: ArrayLike<unknown> };
}

/** The part of a danfo module that `toDataFrame` needs: its DataFrame constructor. */
export interface DanfoModule<D> {
  DataFrame: new (data: Record<string, unknown[]>) => D;
}

/**
 * True when `x` looks like a danfo DataFrame (`columns`, `shape`, `column()`); arquero tables are excluded.
 *
 * @example
 * isDataFrame(new dfd.DataFrame({ text: ['a'] }));   // true
 */
export function isDataFrame(x: unknown): x is DataFrameLike {
  if (typeof x !== 'object' || x === null || isArqueroTable(x)) return false;
  const d = x as Partial<Record<'columns' | 'shape' | 'column', unknown>>;
  return Array.isArray(d.columns) && Array.isArray(d.shape) && typeof d.column === 'function';
}

/** Options of {@link fromDataFrame}. */
export interface FromDataFrameOptions {
  /**
   * Columns whose cells are JSON text to decode (danfo cannot hold objects, so `toDataFrame` stores message
   * lists as JSON). `'auto'` (default) decodes a column when every non-empty cell is a JSON object or a JSON
   * list of objects; `false` decodes nothing.
   */
  json?: 'auto' | string[] | false;
}

/**
 * Converts a danfo DataFrame into an arquero table, decoding JSON-encoded message lists back into arrays.
 *
 * @example
 * const dfd = require('danfojs-node');
 * const table = fromDataFrame(new dfd.DataFrame({ text: ['a', 'b'] }));
 */
export function fromDataFrame(df: DataFrameLike, options: FromDataFrameOptions = {}): ColumnTable {
  const columns: Record<string, unknown[]> = {};
  for (const name of df.columns) columns[name] = Array.from(df.column(name).values);
  return aq.table(decodeJsonColumns(columns, options.json ?? 'auto'));
}

/** Options of {@link toDataFrame}. */
export interface ToDataFrameOptions {
  /** Keep the `__file`/`__row` provenance columns (default false). */
  provenance?: boolean;
}

/**
 * Converts an arquero table into a DataFrame of the danfo module the caller passes. Cells holding arrays or
 * objects (message lists) become JSON text, because danfo stores them as "[object Object]";
 * {@link fromDataFrame} decodes them again.
 *
 * Note: danfo 1.2 loads its own tfjs 3.21, which registers its cpu/webgl kernels into the global registry that
 * tunelab's tfjs 4 shares (measured: `tf.getKernel('BatchMatMul', 'cpu')` changes, with a flood of
 * "already registered" warnings). Training on the default wasm backend is unaffected; for the cpu backend,
 * do data work with danfo in another process, or prefer arquero.
 *
 * @example
 * const dfd = require('danfojs-node');
 * const df = toDataFrame(loadTable('sft.jsonl'), dfd);
 * df.head().print();
 */
export function toDataFrame<D>(table: ColumnTable, dfd: DanfoModule<D>, options: ToDataFrameOptions = {}): D {
  if (table.numRows() === 0) throw new Error('toDataFrame: the table has no rows, and danfo cannot build an empty DataFrame');
  const data: Record<string, unknown[]> = {};
  for (const name of table.columnNames()) {
    if (!options.provenance && isProvenanceColumn(name)) continue;
    data[name] = Array.from(table.array(name), (v) => (typeof v === 'object' && v !== null && !(v instanceof Date) ? JSON.stringify(v) : v));
  }
  return new dfd.DataFrame(data);
}

/** Decodes the chosen columns' JSON cells in place (see {@link FromDataFrameOptions.json}); returns `columns`. */
export function decodeJsonColumns(columns: Record<string, unknown[]>, json: 'auto' | string[] | false): Record<string, unknown[]> {
  if (json === false) return columns;
  for (const [name, values] of Object.entries(columns)) {
    if (Array.isArray(json) && !json.includes(name)) continue;
    const decoded = decodeColumn(values, json === 'auto');
    if (decoded) columns[name] = decoded;
  }
  return columns;
}

// Decodes a column of JSON text, or returns undefined when it is not one. In auto mode only objects and lists
// of objects count, so a column of literal "[1, 2]" answers stays text.
function decodeColumn(values: unknown[], auto: boolean): unknown[] | undefined {
  const out: unknown[] = new Array(values.length);
  let decodedAny = false;
  for (let i = 0; i < values.length; i++) {
    const v = values[i];
    if (v === undefined || v === null || v === '') {
      out[i] = v === '' ? undefined : v;
      continue;
    }
    if (typeof v !== 'string') {
      if (auto) return undefined;
      out[i] = v;
      continue;
    }
    const s = v.trim();
    if (auto && !(s.startsWith('{') || s.startsWith('['))) return undefined;
    let parsed: unknown;
    try {
      parsed = JSON.parse(s);
    } catch {
      if (auto) return undefined;
      out[i] = v; // an explicitly named column keeps undecodable text, so validation can report the row
      continue;
    }
    if (auto && !isObjectOrObjectList(parsed)) return undefined;
    out[i] = parsed;
    decodedAny = true;
  }
  return decodedAny ? out : undefined;
}

function isObjectOrObjectList(v: unknown): boolean {
  const isObj = (x: unknown) => typeof x === 'object' && x !== null && !Array.isArray(x);
  return isObj(v) || (Array.isArray(v) && v.length > 0 && v.every(isObj));
}

/**
 * A new table holding the rows at `indices` (in that order, repeats allowed) of every column.
 *
 * @example
 * takeRows(table, [2, 0]);   // third row, then first
 */
export function takeRows(table: ColumnTable, indices: ArrayLike<number>): ColumnTable {
  const columns: Record<string, unknown[]> = {};
  for (const name of table.columnNames()) {
    const values = table.array(name);
    const picked: unknown[] = new Array(indices.length);
    for (let i = 0; i < indices.length; i++) picked[i] = values[indices[i]];
    columns[name] = picked;
  }
  return aq.table(columns);
}

/** The rows of a table as plain objects (provenance columns included). */
export function rowObjects(table: ColumnTable): DataRow[] {
  return table.objects() as DataRow[];
}
