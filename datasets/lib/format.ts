/**
 * File formats of the datasets, shared by the build and the tests.
 *
 * Text corpora (`*.txt`): UTF-8, `\n` line endings, documents separated by exactly one
 * `\n\n\n` (two blank lines); inside a document paragraphs are separated by one blank line and
 * there is never more than one blank line in a row, so the separator is unambiguous. The file
 * ends with a single `\n`.
 *
 * JSONL (`*.jsonl`): one JSON object per line, keys in a fixed order, `\n` after every line.
 */

export const DOC_SEPARATOR = '\n\n\n';

export interface Message {
  role: 'user' | 'assistant';
  content: string;
}

/** TRL "conversational" language-modeling example. */
export interface InstructionRow {
  messages: Message[];
  source: string;
}

/** TRL "standard" preference example (explicit prompt), plus provenance. */
export interface PreferenceRow {
  prompt: string;
  chosen: string;
  rejected: string;
  source: string;
  why: string;
}

/** Serialises documents; each must be non-empty and free of `\n\n\n`. */
export function formatDocuments(docs: readonly string[]): string {
  for (const d of docs) {
    if (d.trim().length === 0) throw new Error('empty document');
    if (d.includes(DOC_SEPARATOR)) throw new Error('document contains the separator');
    if (/^\n|\n$/.test(d)) throw new Error('document starts or ends with a newline');
  }
  return docs.length ? docs.join(DOC_SEPARATOR) + '\n' : '';
}

/** Inverse of formatDocuments. */
export function parseDocuments(text: string): string[] {
  if (text.length === 0) return [];
  if (!text.endsWith('\n')) throw new Error('text corpus does not end with a newline');
  return text.slice(0, -1).split(DOC_SEPARATOR);
}

/** One JSON object per line. */
export function formatJsonl(rows: readonly object[]): string {
  return rows.map((r) => JSON.stringify(r) + '\n').join('');
}

export function parseJsonl(text: string): unknown[] {
  if (text.length === 0) return [];
  if (!text.endsWith('\n')) throw new Error('JSONL does not end with a newline');
  return text
    .slice(0, -1)
    .split('\n')
    .map((line, i) => {
      try {
        return JSON.parse(line) as unknown;
      } catch (e) {
        throw new Error(`line ${i + 1}: ${(e as Error).message}`);
      }
    });
}

/** Rows of a data file as the manifest counts them: documents (.txt) or lines (.jsonl). */
export function countRows(file: string, text: string): number {
  if (file.endsWith('.txt')) return parseDocuments(text).length;
  if (file.endsWith('.jsonl')) return text.length ? text.split('\n').length - 1 : 0;
  return 0;
}

/** The key an instruction row is split on (its first user message). */
export function instructionKey(row: InstructionRow): string {
  return row.messages[0]?.content ?? '';
}
