/**
 * Tasks from tables: each row a document, the prompt, choices and target read from columns (or computed
 * from the row), as an lm-eval YAML task names dataset columns in `doc_to_text` / `doc_to_choice` /
 * `doc_to_target`.
 */
import type { ColumnTable } from 'arquero';
import { isArqueroTable, rowObjects, type DataRow } from '../../data/frames';
import { checkOptions } from '../../util/options';
import { task, type Task, type TaskKind } from './task';

/** A column name, or a function of the row. */
export type Field<T> = string | ((row: DataRow) => T);

/** How {@link taskFromTable} reads a row. */
export interface TableTaskConfig {
  name: string;
  kind: TaskKind;
  /** Prompt column or function (not for `loglikelihood_rolling`). */
  prompt?: Field<string>;
  /**
   * `multiple_choice`: one column holding an array of choices, several columns with one choice each
   * (`['A', 'B', 'C', 'D']`), or a function.
   */
  choices?: Field<readonly string[]> | readonly string[];
  /** Gold choice (index or text) for `multiple_choice`, the expected text for the other kinds. */
  target: Field<number | string>;
  delimiter?: string;
  until?: readonly string[];
  maxNewTokens?: number;
  mutualInfo?: boolean;
  description?: string;
}

const configKeys = ['name', 'kind', 'prompt', 'choices', 'target', 'delimiter', 'until', 'maxNewTokens', 'mutualInfo', 'description'];

/**
 * A task whose documents are the rows of an arquero table (or plain row objects). Columns are checked
 * up front; a cell of the wrong type is named by row and column when the task reads it.
 *
 * @example
 * const quiz = aq.table({ question: ['2 + 2 =', 'The sky is'], a: ['4', 'blue'], b: ['5', 'green'], answer: [0, 0] });
 * const t = taskFromTable(quiz, { name: 'quiz', kind: 'multiple_choice', prompt: 'question', choices: ['a', 'b'], target: 'answer' });
 * evaluateTasks(model, tok, [t]);
 */
export function taskFromTable(table: ColumnTable | readonly object[], config: TableTaskConfig): Task<DataRow> {
  checkOptions(config, configKeys, `taskFromTable "${config?.name ?? '?'}"`);
  const where = `taskFromTable "${config.name}"`;
  const rows: DataRow[] = isArqueroTable(table) ? rowObjects(table) : Array.isArray(table) ? table as DataRow[] : [];
  if (!isArqueroTable(table) && !Array.isArray(table)) throw new TypeError(`${where}: give an arquero table or an array of rows`);
  if (rows.length === 0) throw new Error(`${where}: the table has no rows`);
  const columns = Object.keys(rows[0]);
  const need = (name: string, what: string) => {
    if (!columns.includes(name)) throw new Error(`${where}: ${what} column "${name}" is not in the table (columns: ${columns.join(', ')})`);
  };
  const read = <T>(field: Field<T>, what: string, check: (v: unknown) => boolean, expected: string) => {
    if (typeof field === 'function') return field;
    need(field, what);
    return (row: DataRow): T => {
      const v = row[field];
      if (!check(v)) throw new Error(`${where}: row ${rows.indexOf(row)}, column "${field}": ${what} must be ${expected}, got ${JSON.stringify(v)}`);
      return v as T;
    };
  };
  const isString = (v: unknown) => typeof v === 'string';
  const prompt = config.prompt === undefined ? undefined : read(config.prompt, 'prompt', isString, 'a string');
  const target = read(config.target, 'target', (v) => isString(v) || Number.isInteger(v), 'a string or an integer index');
  let choices: ((row: DataRow) => readonly string[]) | undefined;
  if (Array.isArray(config.choices)) {
    const cols = config.choices as readonly string[];
    cols.forEach((c) => need(c, 'choice'));
    choices = (row) => cols.map((c) => {
      if (!isString(row[c])) throw new Error(`${where}: row ${rows.indexOf(row)}, column "${c}": a choice must be a string, got ${JSON.stringify(row[c])}`);
      return row[c] as string;
    });
  } else if (config.choices !== undefined) {
    choices = read(config.choices as Field<readonly string[]>, 'choices', (v) => Array.isArray(v) && v.every(isString), 'an array of strings');
  }
  const { prompt: _p, choices: _c, target: _t, ...rest } = config;
  return task<DataRow>({ ...rest, docs: rows, ...(prompt && { prompt }), ...(choices && { choices }), target });
}
