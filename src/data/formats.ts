/**
 * Dataset formats as TRL defines them (https://huggingface.co/docs/trl/dataset_formats), their detection
 * from a table's columns, and row-by-row validation whose errors name the file, the row and the column.
 *
 * | format              | columns                      | standard      | conversational              |
 * |---------------------|------------------------------|---------------|-----------------------------|
 * | `text`              | text                         | string        | —                           |
 * | `messages`          | messages                     | —             | list of {role, content}     |
 * | `prompt-completion` | prompt, completion           | strings       | message lists               |
 * | `preference`        | prompt, chosen, rejected     | strings       | message lists               |
 * | (implicit prompt)   | chosen, rejected             | full texts    | full conversations          |
 * | `unpaired-preference` | prompt, completion, label  | strings, boolean label | message lists, boolean label |
 */
import type { ColumnTable } from 'arquero';
import { ERROR_COLUMN, FILE_COLUMN, ROW_COLUMN, dataColumns, rowObjects, takeRows, type DataRow } from './frames';
import { mappingHint } from './columns';
import { checkOptions } from '../util/options';

/** The dataset formats tunelab trains on (TRL's names for the dataset types). */
export type DatasetFormat = 'text' | 'prompt-completion' | 'messages' | 'preference' | 'unpaired-preference';

/** Columns each format needs; a preference dataset without `prompt` has an implicit prompt. */
export const FORMAT_COLUMNS: Readonly<Record<DatasetFormat, readonly string[]>> = Object.freeze({
  text: ['text'],
  'prompt-completion': ['prompt', 'completion'],
  messages: ['messages'],
  preference: ['prompt', 'chosen', 'rejected'],
  // KTO's rows: one completion each, `label` true when desirable.
  'unpaired-preference': ['prompt', 'completion', 'label'],
});

/** Message roles accepted by default. */
export const MESSAGE_ROLES: readonly string[] = Object.freeze(['system', 'user', 'assistant', 'tool']);

/** One malformed row: where it is and what is wrong with it. */
export interface DatasetProblem {
  /** The file the row came from (its `__file`, else `validate`'s `source`). */
  file: string;
  /** The row's number in its file (its `__row`), else its 1-based position in the table. */
  row: number;
  /** The offending column; absent when the whole row is unreadable (bad JSON line). */
  column?: string;
  /** What is wrong, e.g. `empty string`, `message 2: unknown role "bot"`. */
  problem: string;
}

/** `file: row 17, column "completion": empty string` (parts that are unknown are left out). */
export function formatProblem(p: Partial<DatasetProblem> & { problem: string }): string {
  const where = [p.row !== undefined ? `row ${p.row}` : '', p.column !== undefined ? `column "${p.column}"` : ''].filter(Boolean).join(', ');
  return [p.file, where].filter(Boolean).join(': ') + `: ${p.problem}`;
}

/**
 * An error about a dataset, naming the file, row and column it concerns.
 *
 * @example
 * try { validateDataset(table, 'prompt-completion'); } catch (e) { if (e instanceof DatasetError) console.log(e.row, e.column); }
 */
export class DatasetError extends Error {
  readonly file?: string;
  readonly row?: number;
  readonly column?: string;
  readonly problem: string;

  constructor(p: Partial<DatasetProblem> & { problem: string }) {
    super(formatProblem(p));
    this.name = 'DatasetError';
    this.file = p.file;
    this.row = p.row;
    this.column = p.column;
    this.problem = p.problem;
  }
}

/**
 * The format a table's columns match (provenance columns ignored), checked in the order preference,
 * unpaired preference (prompt + completion + label, as TRL), prompt-completion, messages, text. Throws when none matches, naming the columns and the option that maps
 * them (`{ text: 'body' }`).
 *
 * @example
 * detectFormat(toTable([{ prompt: 'Hi', completion: ' there' }]));   // 'prompt-completion'
 */
export function detectFormat(table: ColumnTable): DatasetFormat {
  const cols = new Set(dataColumns(table));
  if (cols.has('chosen') && cols.has('rejected')) return 'preference';
  if (cols.has('prompt') && cols.has('completion') && cols.has('label')) return 'unpaired-preference';
  if (cols.has('prompt') && cols.has('completion')) return 'prompt-completion';
  if (cols.has('messages')) return 'messages';
  if (cols.has('text')) return 'text';
  throw new Error(
    `cannot detect the dataset format from the columns [${[...cols].join(', ')}]: expected text, messages, ` +
      `prompt + completion, or (prompt +) chosen + rejected; ${mappingHint([...cols])}`,
  );
}

/** Options of {@link validate}. */
export interface ValidateOptions {
  /** Names the file in errors for rows without a `__file` column (tables not read by `loadTable`). */
  source?: string;
  /** Drop malformed rows and list them in `problems` instead of throwing on the first (default false). */
  skipBad?: boolean;
  /** Accepted message roles (default system, user, assistant, tool). */
  roles?: readonly string[];
}

/** Every {@link ValidateOptions} field, for the run-time check of option names. */
export const validateOptionKeys: readonly (keyof ValidateOptions)[] = Object.freeze(['source', 'skipBad', 'roles']);

/** What {@link validate} found. */
export interface ValidationResult {
  /** The table without the malformed rows (the input itself when none were dropped). */
  table: ColumnTable;
  format: DatasetFormat;
  /** Message lists (true) or plain strings (false). */
  conversational: boolean;
  /** Preference data without a `prompt` column: chosen and rejected hold the whole texts/conversations. */
  implicitPrompt: boolean;
  /** One entry per dropped row (its first problem); empty unless `skipBad`. */
  problems: DatasetProblem[];
}

/**
 * Checks every row against a dataset format. A malformed row (unreadable line, missing value, wrong type,
 * empty completion/chosen/rejected/text, unknown role, message without content, a conversational row in a
 * standard dataset or the reverse) throws a {@link DatasetError} such as
 * `data/sft.jsonl: row 17, column "completion": empty string`; with `skipBad` such rows are dropped and
 * listed instead. A column missing from the whole table always throws. Prompts may be empty strings.
 * Whether the dataset is conversational follows the first row that has a string or a list in its answer
 * column (`completion`/`chosen`); later rows must agree.
 *
 * @example
 * const { table, problems } = validateDataset(loadTable('data/sft.jsonl', { badRows: 'keep' }), 'auto', { skipBad: true });
 * for (const p of problems) console.warn(formatProblem(p));
 */
export function validateDataset(table: ColumnTable, format: DatasetFormat | 'auto' = 'auto', options: ValidateOptions = {}): ValidationResult {
  checkOptions(options, validateOptionKeys, 'validate');
  const rows = rowObjects(table);
  const fallbackFile = options.source ?? '<table>';
  const fileOf = (r: DataRow) => (typeof r[FILE_COLUMN] === 'string' ? (r[FILE_COLUMN] as string) : fallbackFile);
  const rowOf = (r: DataRow, i: number) => (typeof r[ROW_COLUMN] === 'number' ? (r[ROW_COLUMN] as number) : i + 1);
  const source = options.source ?? (rows.length > 0 ? fileOf(rows[0]) : fallbackFile);

  // Unreadable rows have no columns, so a file of only those would fail detection with "columns []".
  if (rows.length > 0 && rows.every((r) => typeof r[ERROR_COLUMN] === 'string')) {
    const first = rows[0];
    throw new DatasetError({
      file: source,
      problem: `every row is unreadable (${rows.length} of ${rows.length}); the first, row ${rowOf(first, 0)}: ${String(first[ERROR_COLUMN])}`,
    });
  }
  let fmt: DatasetFormat;
  try {
    fmt = format === 'auto' ? detectFormat(table) : format;
  } catch (e) {
    throw new DatasetError({ file: source, problem: (e as Error).message });
  }

  const cols = new Set(dataColumns(table));
  const implicitPrompt = fmt === 'preference' && !cols.has('prompt');
  const needed = FORMAT_COLUMNS[fmt].filter((c) => !(implicitPrompt && c === 'prompt'));
  for (const c of needed) {
    if (!cols.has(c)) {
      throw new DatasetError({ file: source, column: c, problem: `missing from the table (columns: ${[...cols].join(', ')}); ${mappingHint([...cols], needed)}` });
    }
  }

  const conversational = fmt === 'messages' || (fmt !== 'text' && firstKind(rows, fmt === 'preference' ? 'chosen' : 'completion', needed) === 'list');
  const ctx: RowContext = { conversational, implicitPrompt, roles: options.roles ?? MESSAGE_ROLES };
  const problems: DatasetProblem[] = [];
  const keep: number[] = [];
  rows.forEach((r, i) => {
    const found = checkRow(r, fmt, needed, ctx);
    if (!found) {
      keep.push(i);
      return;
    }
    const p: DatasetProblem = { file: fileOf(r), row: rowOf(r, i), ...found };
    if (!options.skipBad) throw new DatasetError(p);
    problems.push(p);
  });
  return { table: problems.length ? takeRows(table, keep) : table, format: fmt, conversational, implicitPrompt, problems };
}

/**
 * Checks one list of chat messages; returns what is wrong (`message 2: unknown role "bot"`) or undefined.
 * An assistant message may omit `content` when it has `tool_calls`.
 *
 * @example
 * checkMessages([{ role: 'user', content: 'Hi' }]);   // undefined
 */
export function checkMessages(value: unknown, roles: readonly string[] = MESSAGE_ROLES): string | undefined {
  if (!Array.isArray(value)) return `expected a list of messages, got ${describe(value)}`;
  if (value.length === 0) return 'empty list of messages';
  for (let k = 0; k < value.length; k++) {
    const m: unknown = value[k];
    const at = `message ${k + 1}`;
    if (typeof m !== 'object' || m === null || Array.isArray(m)) return `${at}: expected an object with role and content, got ${describe(m)}`;
    const msg = m as DataRow;
    if (msg.role === undefined || msg.role === null) return `${at}: no role`;
    if (typeof msg.role !== 'string') return `${at}: role must be a string, got ${describe(msg.role)}`;
    if (!roles.includes(msg.role)) return `${at}: unknown role "${msg.role}" (expected ${roles.join(', ')})`;
    if (msg.content === undefined || msg.content === null) {
      if (!(msg.role === 'assistant' && Array.isArray(msg.tool_calls))) return `${at}: no content`;
    } else if (typeof msg.content !== 'string') return `${at}: content must be a string, got ${describe(msg.content)}`;
  }
  return undefined;
}

interface RowContext {
  conversational: boolean;
  implicitPrompt: boolean;
  roles: readonly string[];
}

// The first problem of a row, or undefined.
function checkRow(r: DataRow, fmt: DatasetFormat, needed: readonly string[], ctx: RowContext): { column?: string; problem: string } | undefined {
  if (typeof r[ERROR_COLUMN] === 'string') return { problem: r[ERROR_COLUMN] as string };
  for (const column of needed) {
    const problem = fmt === 'messages' ? checkConversation(r[column], ctx) : checkField(r[column], column, ctx);
    if (problem) return { column, problem };
  }
  return undefined;
}

function checkConversation(value: unknown, ctx: RowContext): string | undefined {
  if (value === undefined || value === null) return 'missing';
  const p = checkMessages(value, ctx.roles);
  if (p) return p;
  if (!(value as DataRow[]).some((m) => m.role === 'assistant')) return 'no assistant message (nothing to learn from)';
  return undefined;
}

// Answers (completion, chosen, rejected) and text must not be empty; a prompt may be.
function checkField(value: unknown, column: string, ctx: RowContext): string | undefined {
  if (value === undefined || value === null) return 'missing';
  if (column === 'label') return typeof value === 'boolean' ? undefined : `expected a boolean (true = desirable, false = undesirable), got ${describe(value)}${typeof value === 'string' || typeof value === 'number' ? ` ${JSON.stringify(value)}` : ''}`;
  const answer = column !== 'prompt';
  if (ctx.conversational) {
    if (typeof value === 'string') return 'expected a list of messages (the dataset is conversational), got a string';
    const p = checkMessages(value, ctx.roles);
    if (p) return p;
    const list = value as DataRow[];
    const last = list[list.length - 1];
    if (answer && ctx.implicitPrompt && last.role !== 'assistant') return `message ${list.length}: the last message should be the assistant's, got "${String(last.role)}"`;
    if (answer && typeof last.content === 'string' && last.content.trim() === '') return `message ${list.length}: empty content`;
    return undefined;
  }
  if (Array.isArray(value)) return 'expected a string (the dataset is standard, not conversational), got a list of messages';
  if (typeof value !== 'string') return `expected a string, got ${describe(value)}`;
  if (answer && value === '') return 'empty string';
  if (answer && value.trim() === '') return 'whitespace only';
  return undefined;
}

// 'list' or 'string' for the first row holding either in the answer column (else any needed column).
function firstKind(rows: readonly DataRow[], answer: string, needed: readonly string[]): 'list' | 'string' | undefined {
  for (const column of [answer, ...needed]) {
    for (const r of rows) {
      const v = r[column];
      if (Array.isArray(v)) return 'list';
      if (typeof v === 'string') return 'string';
    }
  }
  return undefined;
}

function describe(x: unknown): string {
  return x === null ? 'null' : Array.isArray(x) ? 'list' : typeof x;
}
