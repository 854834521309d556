/**
 * What the fluent API accepts as data, turned into what the methods train on: documents (continued
 * pretraining) or prompt/completion and messages rows (SFT). Also the shipped datasets by name.
 */
import * as fs from 'fs';
import * as path from 'path';
import type { ColumnTable } from 'arquero';
import { Corpus } from '../data/corpus';
import { isArqueroTable, isDataFrame, rowObjects, type DataFrameLike, type DataRow } from '../data/frames';
import { textDocuments, toTable } from '../data/load';
import { mappingHint } from '../data/columns';
import { rowFormat, type PreferenceRow, type SftRow } from '../data/tokenize';

/** Data as the fluent API takes it: a Corpus, an arquero table, a danfo DataFrame, rows, documents or a file path. */
export type LabData = Corpus | ColumnTable | DataFrameLike | readonly object[] | readonly string[] | string;

/** Folder of the shipped datasets (the package's `datasets/`). */
export const datasetsDir = path.join(__dirname, '..', '..', 'datasets');

/** Names of the shipped datasets. */
export type ShippedDataset = 'general' | 'domain' | 'instructions' | 'preferences';

/** The separator of documents in the shipped text files (see datasets/README.md). */
export const documentSeparator = '\n\n\n';

/**
 * A shipped dataset split: documents (strings) for `general` and `domain`, rows for `instructions`
 * (messages) and `preferences` (prompt/chosen/rejected).
 *
 * @example
 * const docs = dataset('domain');                       // string[]
 * const held = dataset('instructions', 'heldout');      // { messages, source }[]
 */
export function dataset(name: 'general' | 'domain', split?: 'train' | 'heldout'): string[];
export function dataset(name: 'instructions' | 'preferences', split?: 'train' | 'heldout'): DataRow[];
export function dataset(name: ShippedDataset, split: 'train' | 'heldout' = 'train'): string[] | DataRow[] {
  const known: ShippedDataset[] = ['general', 'domain', 'instructions', 'preferences'];
  if (!known.includes(name)) throw new Error(`no shipped dataset "${String(name)}" (shipped: ${known.join(', ')})`);
  if (split !== 'train' && split !== 'heldout') throw new Error(`dataset split must be "train" or "heldout" (got "${String(split)}")`);
  const text = name === 'general' || name === 'domain';
  const file = path.join(datasetsDir, name, `${split}.${text ? 'txt' : 'jsonl'}`);
  if (!fs.existsSync(file)) throw new Error(`${file}: missing; run \`npm run datasets\` in the tunelab checkout to rebuild the shipped datasets`);
  return text ? textDocuments(file, documentSeparator) : Corpus.load(file).rows();
}

function rowsOf(data: Exclude<LabData, string | readonly string[]>): DataRow[] {
  if (data instanceof Corpus) return data.rows();
  if (isArqueroTable(data)) return rowObjects(data as ColumnTable);
  if (isDataFrame(data)) return rowObjects(toTable(data as DataFrameLike));
  return [...(data as readonly object[])] as DataRow[];
}

function load(file: string, separator: string | undefined): readonly string[] | DataRow[] {
  if (!fs.existsSync(file)) throw new Error(`${file}: no such file or folder`);
  const isText = fs.statSync(file).isDirectory() || /\.(txt|md)$/i.test(file);
  return isText ? textDocuments(file, separator) : Corpus.load(file).rows();
}

const isStrings = (x: unknown): x is readonly string[] => Array.isArray(x) && x.every((d) => typeof d === 'string');

/**
 * Whether data are documents (strings, a text file or folder, or rows with only a `text` column besides
 * metadata) or SFT rows (prompt/completion or messages).
 */
export function dataKind(data: LabData): 'documents' | 'rows' {
  if (typeof data === 'string') return fs.existsSync(data) && (fs.statSync(data).isDirectory() || /\.(txt|md)$/i.test(data)) ? 'documents' : 'rows';
  if (isStrings(data)) return 'documents';
  const first = rowsOf(data as Exclude<LabData, string | readonly string[]>)[0];
  return first && typeof first.text === 'string' && !('messages' in first) && !('prompt' in first) ? 'documents' : 'rows';
}

/**
 * Documents for continued pretraining: strings as they are, or the `text` column of rows/tables.
 * Throws naming `what` and the row when a row has no text.
 */
export function toDocuments(data: LabData, what = 'data', separator = documentSeparator): string[] {
  const d = typeof data === 'string' ? load(data, separator) : data;
  if (isStrings(d)) return [...d];
  return rowsOf(d as Exclude<LabData, string | readonly string[]>).map((row, i) => {
    if (typeof row.text !== 'string') {
      throw new Error(`${what}: row ${i} has no string "text" column (keys: ${Object.keys(row).join(', ')}); continued pretraining needs documents; ${mappingHint(Object.keys(row), ['text'], 'data')}`);
    }
    return row.text;
  });
}

/**
 * Rows for SFT (prompt/completion, messages or text). Throws naming `what`, the row and its keys when a
 * row fits no SFT format (e.g. preference rows).
 */
export function toSftRows(data: LabData, what = 'data'): SftRow[] {
  const d = typeof data === 'string' ? load(data, undefined) : data;
  if (isStrings(d)) return d.map((text) => ({ text }));
  return rowsOf(d as Exclude<LabData, string | readonly string[]>).map((row, i) => {
    let format: string;
    try {
      format = rowFormat(row);
    } catch (e) {
      throw new Error(`${what}: row ${i}: ${(e as Error).message}; ${mappingHint(Object.keys(row), ['prompt', 'completion'], 'data')}`);
    }
    if (format === 'preference') throw new Error(`${what}: row ${i} is a preference pair (prompt/chosen/rejected); SFT needs prompt/completion or messages rows`);
    return row as unknown as SftRow;
  });
}

/** Preference rows (prompt/chosen/rejected) for reward modelling and DPO; names the row that is not one. */
export function toPreferenceRows(data: LabData, what = 'data'): PreferenceRow[] {
  const d = typeof data === 'string' ? load(data, undefined) : data;
  if (isStrings(d)) throw new Error(`${what}: documents given; reward models and DPO need prompt/chosen/rejected rows`);
  return rowsOf(d as Exclude<LabData, string | readonly string[]>).map((row, i) => {
    if (typeof row.chosen !== 'string' || typeof row.rejected !== 'string') {
      throw new Error(`${what}: row ${i} is not a preference pair (needs string "chosen" and "rejected"; keys: ${Object.keys(row).join(', ')}); ${mappingHint(Object.keys(row), ['chosen', 'rejected'], 'data')}`);
    }
    return row as unknown as PreferenceRow;
  });
}

/**
 * KTO's input: preference rows when the first row is a pair (string `chosen` and `rejected`), else SFT
 * rows; a file is read once. Errors name `what` and the row, as {@link toPreferenceRows} / {@link toSftRows}.
 */
export function toPreferenceOrSftRows(data: LabData, what = 'data'): { preference: PreferenceRow[] } | { sft: SftRow[] } {
  const d = typeof data === 'string' ? load(data, undefined) : data;
  const first = isStrings(d) ? undefined : rowsOf(d as Exclude<LabData, string | readonly string[]>)[0];
  return first && typeof first.chosen === 'string' && typeof first.rejected === 'string' ? { preference: toPreferenceRows(d, what) } : { sft: toSftRows(d, what) };
}

/** Prompts for PPO: strings as they are, or the `prompt` column of rows. */
export function toPrompts(data: LabData, what = 'data'): string[] {
  const d = typeof data === 'string' ? load(data, documentSeparator) : data;
  if (isStrings(d)) return [...d];
  return rowsOf(d as Exclude<LabData, string | readonly string[]>).map((row, i) => {
    if (typeof row.prompt !== 'string') throw new Error(`${what}: row ${i} has no string "prompt" column (keys: ${Object.keys(row).join(', ')}); ${mappingHint(Object.keys(row), ['prompt'], 'data')}`);
    return row.prompt;
  });
}
