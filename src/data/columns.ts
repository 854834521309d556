/**
 * The option that maps a user's column names onto the dataset formats' (`{ text: 'body' }`; `loadTable`
 * applies it), and the hint that error messages give when the columns match no format.
 */

/** The columns the dataset formats use (see `FORMAT_COLUMNS` in formats). */
export const FORMAT_FIELDS = Object.freeze(['text', 'prompt', 'completion', 'chosen', 'rejected', 'messages'] as const);

/** One of {@link FORMAT_FIELDS}. */
export type FormatField = (typeof FORMAT_FIELDS)[number];

/**
 * Which of the data's columns holds each format field, e.g. `{ text: 'body' }` or
 * `{ prompt: 'question', completion: 'answer' }`. Unnamed fields keep their own names.
 */
export type ColumnMapping = { [F in FormatField]?: string };

/** The column mapping inside a larger options object (the fields that are set). */
export function columnMapping(options: ColumnMapping): ColumnMapping {
  const out: ColumnMapping = {};
  for (const f of FORMAT_FIELDS) {
    const c = options[f];
    if (c === undefined) continue;
    if (typeof c !== 'string' || c === '') throw new Error(`option ${f}: expected a column name, got ${JSON.stringify(c)}`);
    out[f] = c;
  }
  return out;
}

// Common names of each field's column in other datasets and tools, for the hint.
const ALIASES: Readonly<Record<FormatField, readonly string[]>> = {
  text: ['body', 'content', 'document', 'doc', 'article', 'passage', 'sentence', 'review', 'note', 'notes'],
  prompt: ['question', 'instruction', 'input', 'query', 'context', 'prefix'],
  completion: ['answer', 'response', 'output', 'target', 'reply'], // not 'label': KTO's unpaired rows have a real label column
  chosen: ['accepted', 'preferred', 'better', 'good', 'winner'],
  rejected: ['dispreferred', 'worse', 'bad', 'loser'],
  messages: ['conversation', 'conversations', 'chat', 'dialog', 'dialogue', 'turns'],
};

/**
 * The option that would map `columns` onto a format, as text (`{ prompt: 'question', completion: 'answer' }`).
 * With `fields`, those fields are mapped (by common column names, else the unused columns in order);
 * without, the first format whose fields all have a commonly named column, else `{ text: '<first column>' }`.
 *
 * @example
 * suggestMapping(['id', 'body']);                             // "{ text: 'body' }"
 * suggestMapping(['q', 'a'], ['prompt', 'completion']);       // "{ prompt: 'q', completion: 'a' }"
 */
export function suggestMapping(columns: readonly string[], fields?: readonly string[]): string {
  const find = (f: FormatField) => columns.find((c) => c === f || ALIASES[f].includes(c.toLowerCase()));
  const fit = (fs: FormatField[]) => {
    const found = fs.map(find);
    return found.every((c) => c !== undefined) ? fs.map((f, k) => `${f}: '${found[k]}'`) : undefined;
  };
  if (fields) {
    const isField = (f: string): f is FormatField => (FORMAT_FIELDS as readonly string[]).includes(f);
    const known = fields.filter((f): f is FormatField => isField(f) && !columns.includes(f));
    const picked = known.map((f) => find(f));
    const unused = columns.filter((c) => !picked.includes(c) && !isField(c));
    const parts = known.map((f, k) => `${f}: '${picked[k] ?? unused.shift() ?? `your_${f}_column`}'`);
    return `{ ${parts.join(', ')} }`;
  }
  const parts = fit(['chosen', 'rejected']) ?? fit(['prompt', 'completion']) ?? fit(['messages']) ?? fit(['text']) ?? [`text: '${columns[0] ?? 'body'}'`];
  return `{ ${parts.join(', ')} }`;
}

/**
 * The clause error messages end with: the option that maps the columns (see {@link suggestMapping}), as
 * `Corpus.load(file, …)` for files or `Corpus.from(data, …)` for data in memory.
 */
export function mappingHint(columns: readonly string[], fields?: readonly string[], source: 'file' | 'data' = 'file'): string {
  const call = source === 'file' ? 'Corpus.load(file' : 'Corpus.from(data';
  return `name your columns with an option, e.g. ${call}, ${suggestMapping(columns, fields)})`;
}
