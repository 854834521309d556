/**
 * A task in the style of EleutherAI's lm-evaluation-harness: documents plus three functions, the prompt
 * of a document (`doc_to_text`), its choices (`doc_to_choice`) and its target (`doc_to_target`), and an
 * output type that says how the model is scored:
 *
 * - `multiple_choice`: log-likelihood of `delimiter + choice` after the prompt for every choice; `acc` is
 *   right when the gold choice has the highest log-likelihood, `acc_norm` when it has the highest
 *   log-likelihood per character of the choice (lm-eval: `argmax(lls / [len(c) for c in choices])`); with
 *   `mutualInfo`, `acc_mutual_info` when it has the highest log-likelihood less its log-likelihood with no
 *   context (lm-eval scores the choice after an empty context: `("", choice)`).
 * - `loglikelihood`: log-likelihood of `delimiter + target` (LAMBADA); `acc` is right when every target
 *   token is the argmax (lm-eval's `is_greedy`), `perplexity` is exp(−mean log-likelihood) over documents.
 * - `generate_until`: greedy continuation of the prompt, cut at the first `until` string; `exact_match` and
 *   `contains` compare it with the target after lower-casing and collapsing whitespace.
 * - `loglikelihood_rolling`: log-likelihood of the whole target text (no prompt) in disjoint windows;
 *   `word_perplexity` = exp(−Σ ll / Σ words), `byte_perplexity` = exp(−Σ ll / Σ UTF-8 bytes), `bits_per_byte`
 *   = −Σ ll / Σ bytes / ln 2, with words counted as lm-eval does (`len(re.split(r"\s+", text))`).
 */

/** How a task's documents are scored (lm-eval's `output_type`). */
export type TaskKind = 'multiple_choice' | 'loglikelihood' | 'generate_until' | 'loglikelihood_rolling';

/** Every {@link TaskKind}. */
export const taskKinds: readonly TaskKind[] = Object.freeze(['multiple_choice', 'loglikelihood', 'generate_until', 'loglikelihood_rolling']);

/** What a task is made of; {@link task} checks it and fills the defaults. */
export interface TaskSpec<D = Record<string, unknown>> {
  /** Name in tables and charts. */
  name: string;
  kind: TaskKind;
  /** The documents (rows) scored, in order. */
  docs: readonly D[];
  /** Text before the answer (`doc_to_text`); unused by `loglikelihood_rolling`. */
  prompt?: (doc: D) => string;
  /** Answer options (`doc_to_choice`): `multiple_choice` only. */
  choices?: (doc: D) => readonly string[];
  /** Gold choice index (`multiple_choice`), or the expected text (the other kinds). */
  target: (doc: D) => number | string;
  /** Put between prompt and answer (lm-eval's `target_delimiter`, default one space). */
  delimiter?: string;
  /** `generate_until`: generation stops at the first of these strings (lm-eval's default `["\n\n"]`). */
  until?: readonly string[];
  /** `generate_until`: most new tokens (default 32). */
  maxNewTokens?: number;
  /** `multiple_choice`: also score `acc_mutual_info` (one more request per choice, without the prompt). */
  mutualInfo?: boolean;
  /** One line on what the task measures and how it was built. */
  description?: string;
}

/**
 * A checked task (see {@link task}). Its functions are the spec's; `target` of a `multiple_choice` task
 * gives the gold choice index.
 */
export class Task<D = Record<string, unknown>> {
  readonly name: string;
  readonly kind: TaskKind;
  readonly docs: readonly D[];
  readonly delimiter: string;
  readonly until: readonly string[];
  readonly maxNewTokens: number;
  readonly mutualInfo: boolean;
  readonly description: string;
  // Typed loosely so a Task<Doc> is a Task<unknown>: the document type only flows out (docs), never in.
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  private readonly spec: TaskSpec<any>;

  /** @internal use {@link task} */
  constructor(spec: TaskSpec<D>) {
    this.spec = spec;
    this.name = spec.name;
    this.kind = spec.kind;
    this.docs = spec.docs;
    this.delimiter = spec.delimiter ?? ' ';
    this.until = Object.freeze([...(spec.until ?? ['\n\n'])]);
    this.maxNewTokens = spec.maxNewTokens ?? 32;
    this.mutualInfo = spec.mutualInfo ?? false;
    this.description = spec.description ?? '';
  }

  /** The prompt of document `i` (empty for `loglikelihood_rolling`). */
  prompt(i: number): string {
    if (this.kind === 'loglikelihood_rolling') return '';
    const p = this.spec.prompt!(this.docs[i]);
    if (typeof p !== 'string') throw new Error(`task "${this.name}", document ${i}: prompt must return a string, got ${describe(p)}`);
    return p;
  }

  /** The choices of document `i` (`multiple_choice`). */
  choices(i: number): string[] {
    const c = this.spec.choices!(this.docs[i]);
    if (!Array.isArray(c) || c.length < 2 || c.some((x) => typeof x !== 'string' || x.length === 0)) {
      throw new Error(`task "${this.name}", document ${i}: choices must be at least two non-empty strings, got ${describe(c)}`);
    }
    return [...c];
  }

  /** Gold choice index of document `i` (`multiple_choice`; a target string is looked up among the choices). */
  gold(i: number, choices: readonly string[] = this.choices(i)): number {
    const t = this.spec.target(this.docs[i]);
    const g = typeof t === 'string' ? choices.indexOf(t) : t;
    if (!Number.isInteger(g) || g < 0 || g >= choices.length) {
      throw new Error(`task "${this.name}", document ${i}: target ${JSON.stringify(t)} is not one of its ${choices.length} choices (give an index 0…${choices.length - 1} or a choice's text)`);
    }
    return g;
  }

  /** Expected text of document `i` (every kind but `multiple_choice`). */
  text(i: number): string {
    const t = this.spec.target(this.docs[i]);
    if (typeof t !== 'string' || (t.length === 0 && this.kind !== 'generate_until')) {
      throw new Error(`task "${this.name}", document ${i}: target must be a non-empty string for ${this.kind}, got ${describe(t)}`);
    }
    return t;
  }

  /** The same task on the first `n` documents (lm-eval's `--limit`). */
  limit(n: number | null): Task<D> {
    if (n === null || n >= this.docs.length) return this;
    if (!Number.isInteger(n) || n < 1) throw new Error(`task "${this.name}": limit must be a positive integer or null (got ${n})`);
    return new Task({ ...this.spec, docs: this.docs.slice(0, n) });
  }

  /** Prompt, choices and target of every document as rows (for a table view). */
  rows(): { doc: number; prompt: string; choices: string; target: string }[] {
    return this.docs.map((_, i) => {
      const choices = this.kind === 'multiple_choice' ? this.choices(i) : [];
      const target = this.kind === 'multiple_choice' ? choices[this.gold(i, choices)] : this.text(i);
      return { doc: i, prompt: this.prompt(i), choices: choices.join(' | '), target };
    });
  }
}

function describe(x: unknown): string {
  const s = JSON.stringify(x);
  return s === undefined ? String(x) : s.length > 80 ? `${s.slice(0, 77)}...` : s;
}

const specKeys = ['name', 'kind', 'docs', 'prompt', 'choices', 'target', 'delimiter', 'until', 'maxNewTokens', 'mutualInfo', 'description'];

/**
 * Checks a task spec and returns the {@link Task}. Errors name the task and the field.
 *
 * @example
 * const capitals = task({
 *   name: 'capitals', kind: 'multiple_choice', docs: [{ q: 'Capital of France?', options: ['Paris', 'Rome'], answer: 0 }],
 *   prompt: (d) => `Q: ${d.q}\nA:`, choices: (d) => d.options, target: (d) => d.answer,
 * });
 */
export function task<D>(spec: TaskSpec<D>): Task<D> {
  const where = `task "${spec?.name ?? '?'}"`;
  if (typeof spec !== 'object' || spec === null) throw new TypeError('task: give a spec object');
  for (const k of Object.keys(spec)) if (!specKeys.includes(k)) throw new Error(`${where}: unknown field "${k}" (fields: ${specKeys.join(', ')})`);
  if (typeof spec.name !== 'string' || spec.name.length === 0) throw new Error('task: name must be a non-empty string');
  if (!taskKinds.includes(spec.kind)) throw new Error(`${where}: kind must be one of ${taskKinds.join(', ')} (got ${JSON.stringify(spec.kind)})`);
  if (!Array.isArray(spec.docs) || spec.docs.length === 0) throw new Error(`${where}: docs must be a non-empty array`);
  if (typeof spec.target !== 'function') throw new Error(`${where}: target must be a function of a document`);
  if (spec.kind !== 'loglikelihood_rolling' && typeof spec.prompt !== 'function') throw new Error(`${where}: prompt must be a function of a document (kind ${spec.kind})`);
  if (spec.kind === 'multiple_choice' && typeof spec.choices !== 'function') throw new Error(`${where}: a multiple_choice task needs choices, a function of a document`);
  if (spec.kind !== 'multiple_choice' && spec.choices !== undefined) throw new Error(`${where}: choices apply to multiple_choice tasks only (kind ${spec.kind})`);
  if (spec.delimiter !== undefined && typeof spec.delimiter !== 'string') throw new Error(`${where}: delimiter must be a string`);
  if (spec.until !== undefined && (!Array.isArray(spec.until) || spec.until.some((u) => typeof u !== 'string' || u.length === 0))) throw new Error(`${where}: until must be an array of non-empty strings`);
  if (spec.mutualInfo !== undefined && (typeof spec.mutualInfo !== 'boolean' || (spec.mutualInfo && spec.kind !== 'multiple_choice'))) throw new Error(`${where}: mutualInfo is a boolean for multiple_choice tasks`);
  if (spec.maxNewTokens !== undefined && (!Number.isInteger(spec.maxNewTokens) || spec.maxNewTokens < 1)) throw new Error(`${where}: maxNewTokens must be a positive integer (got ${spec.maxNewTokens})`);
  return new Task(spec);
}

/** Whether `x` is a {@link Task} (or an array of them). */
export function isTasks(x: unknown): x is Task<unknown> | readonly Task<unknown>[] {
  return x instanceof Task || (Array.isArray(x) && x.length > 0 && x.every((t) => t instanceof Task));
}
