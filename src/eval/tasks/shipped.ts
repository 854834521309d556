/**
 * Three small tasks built offline from the shipped held-out splits (never trained on by the shipped base
 * or the notebooks' runs), deterministic for a seed: the same seed gives the same documents, choices and
 * gold positions on every machine.
 *
 * - {@link lastWordTask} (LAMBADA-style, arXiv 1606.06031): a passage of general English whose last word
 *   the model must produce. Passages are runs of whole sentences of one paragraph (150–400 characters)
 *   ending in a word of ≥ 3 letters that also occurs earlier in the passage, so the context helps (LAMBADA's
 *   human filter is not reproducible offline; this is its usual automatic stand-in). Final punctuation is
 *   dropped, as in LAMBADA. Scored by log-likelihood: `acc` (greedy) and `perplexity`.
 * - {@link realContinuationTask} (HellaSwag-style, arXiv 1905.07830): one or two sentences of general
 *   English and four candidate next sentences: the real one and three sentences drawn from other documents,
 *   of similar length (0.67–1.5 × the real one's characters) so length alone does not give it away.
 *   Scored by `acc`, `acc_norm` and `acc_mutual_info` (which discounts how likely a sentence is anyway).
 * - {@link domainCompletionTask}: a line of a Bash or Python example from the domain held-out split (lines of
 *   multi-line blocks, 24–100 characters, not comments), cut at the space nearest its middle; the context is up
 *   to four preceding lines of the block plus the line's first half; the choices are the real second half and
 *   the second halves of three lines from other documents (0.5–2 × its length). Scored by `acc`, `acc_norm` and
 *   `acc_mutual_info`.
 */
import { dataset } from '../../lab/data';
import { Rng } from '../../util/rng';
import { task, type Task } from './task';

/** Options of the shipped tasks. */
export interface ShippedTaskOptions {
  /** Documents in the task (fewer when the held-out text has fewer candidates). */
  size: number;
  /** Seed of the sampling, distractors and gold positions. */
  seed: number;
}

/** Defaults of {@link ShippedTaskOptions}. Frozen: override by spreading. */
export const shippedTaskDefaults: Readonly<ShippedTaskOptions> = Object.freeze({ size: 200, seed: 21 });

/** A last-word document. */
export interface LastWordDoc {
  context: string;
  word: string;
  /** Title of the held-out document it comes from. */
  source: string;
}

/** A multiple-choice document (real continuation / domain completion). */
export interface ChoiceDoc {
  context: string;
  endings: string[];
  /** Index of the real ending. */
  label: number;
  source: string;
}

/** Single-line prose paragraphs of a document (code blocks and headings have line breaks or are short). */
function proseParagraphs(doc: string): string[] {
  return doc.split('\n\n').filter((p) => !p.includes('\n') && p.length >= 100);
}

/**
 * Sentences of a paragraph: split after . ! ? (and a closing quote or bracket) before a capital, but not
 * after a title or common abbreviation ("Mr. Speaker").
 */
export function sentences(paragraph: string): string[] {
  return paragraph.split(/(?<!\b(?:Mr|Mrs|Ms|Dr|St|Mt|Jr|Sr|Gen|Gov|Sen|Rep|No|vs|etc)\.)(?<=[.!?]["'”’)]?)\s+(?=["'“‘(]?[A-Z])/)
    .map((s) => s.trim()).filter((s) => s.length > 0);
}

function titleOf(doc: string): string {
  return doc.slice(0, doc.indexOf('\n') < 0 ? doc.length : doc.indexOf('\n')).trim();
}

function check(o: Partial<ShippedTaskOptions>, where: string): ShippedTaskOptions {
  const r = { ...shippedTaskDefaults, ...o };
  if (!Number.isInteger(r.size) || r.size < 1) throw new Error(`${where}: size must be a positive integer (got ${r.size})`);
  if (!Number.isInteger(r.seed)) throw new Error(`${where}: seed must be an integer (got ${r.seed})`);
  return r;
}

/** `size` items of a seeded shuffle. */
function sample<T>(items: T[], size: number, rng: Rng): T[] {
  return rng.shuffle(items).slice(0, size);
}

/** A context and its real ending, from held-out document `doc`. */
interface Candidate {
  context: string;
  real: string;
  doc: number;
  source: string;
}

/**
 * A multiple-choice task of the first `size` candidates (in seeded order) that have three distractors in the
 * pool, drawn from other documents with a length in `range` × the real ending's.
 */
function choiceTask(name: string, description: string, candidates: Candidate[], pool: readonly { text: string; doc: number }[],
  range: [number, number], size: number, rng: Rng): Task<ChoiceDoc> {
  const docs: ChoiceDoc[] = [];
  for (const c of rng.shuffle(candidates)) {
    if (docs.length >= size) break;
    const e = withDistractors(c.real, c.doc, pool, range, rng);
    if (e) docs.push({ context: c.context, ...e, source: c.source });
  }
  return task<ChoiceDoc>({
    name, kind: 'multiple_choice', docs, description, mutualInfo: true,
    prompt: (d) => d.context, choices: (d) => d.endings, target: (d) => d.label,
  });
}

/** The real ending placed at a seeded position among distractors drawn from other documents. */
function withDistractors(real: string, docIndex: number, pool: readonly { text: string; doc: number }[], range: [number, number], rng: Rng): { endings: string[]; label: number } | null {
  const fits = pool.filter((p) => p.doc !== docIndex && p.text !== real && p.text.length >= range[0] * real.length && p.text.length <= range[1] * real.length);
  if (fits.length < 3) return null;
  const picked: string[] = [];
  while (picked.length < 3) {
    const c = fits[rng.int(fits.length)].text;
    if (!picked.includes(c)) picked.push(c);
  }
  const label = rng.int(4);
  picked.splice(label, 0, real);
  return { endings: picked, label };
}

/**
 * LAMBADA-style last-word prediction on the general held-out text (see the module notes).
 *
 * @example
 * const [r] = evaluateTasks(model, tok, [lastWordTask({ size: 100 })]);
 */
export function lastWordTask(options: Partial<ShippedTaskOptions> = {}): Task<LastWordDoc> {
  const o = check(options, 'lastWordTask');
  const docs: LastWordDoc[] = [];
  for (const doc of dataset('general', 'heldout')) {
    for (const p of proseParagraphs(doc)) {
      const ss = sentences(p);
      for (let end = 1; end < ss.length; end++) {
        let start = end;
        while (start > 0 && ss.slice(start - 1, end + 1).join(' ').length <= 400) start--;
        const passage = ss.slice(start, end + 1).join(' ');
        const m = /^(.*\S)\s+([A-Za-z]{3,})[.!?;:,"'”’)]*$/s.exec(passage);
        if (start === end || passage.length < 150 || passage.length > 400 || !m) continue;
        const [, context, word] = m;
        if (!new RegExp(`\\b${word}\\b`, 'i').test(context)) continue;
        docs.push({ context, word, source: titleOf(doc) });
      }
    }
  }
  return task<LastWordDoc>({
    name: 'last_word', kind: 'loglikelihood', docs: sample(docs, o.size, new Rng(o.seed)),
    prompt: (d) => d.context, target: (d) => d.word,
    description: 'LAMBADA-style: the last word of a general held-out passage that also occurs earlier in it',
  });
}

/**
 * HellaSwag-style choice of the real next sentence on the general held-out text (see the module notes).
 *
 * @example
 * realContinuationTask().rows()[0]; // { prompt, choices: 'a | b | c | d', target }
 */
export function realContinuationTask(options: Partial<ShippedTaskOptions> = {}): Task<ChoiceDoc> {
  const o = check(options, 'realContinuationTask');
  const rng = new Rng(o.seed);
  const candidates: Candidate[] = [];
  const pool: { text: string; doc: number }[] = [];
  dataset('general', 'heldout').forEach((doc, d) => {
    for (const p of proseParagraphs(doc)) {
      const ss = sentences(p);
      ss.forEach((s, i) => {
        if (s.length < 20 || s.length > 160) return;
        pool.push({ text: s, doc: d });
        if (i === 0) return;
        const context = ss.slice(Math.max(0, i - 2), i).join(' ');
        if (context.length <= 300) candidates.push({ context, real: s, doc: d, source: titleOf(doc) });
      });
    }
  });
  return choiceTask('real_continuation', 'HellaSwag-style: the real next sentence of a general held-out passage among three from other documents',
    candidates, pool, [0.67, 1.5], o.size, rng);
}

/**
 * Which snippet completes a line of a Bash / Python example on the domain held-out text (see the module notes).
 *
 * @example
 * const t = domainCompletionTask({ size: 50 });
 */
export function domainCompletionTask(options: Partial<ShippedTaskOptions> = {}): Task<ChoiceDoc> {
  const o = check(options, 'domainCompletionTask');
  const rng = new Rng(o.seed);
  const candidates: Candidate[] = [];
  dataset('domain', 'heldout').forEach((doc, d) => {
    for (const block of doc.split('\n\n').filter((b) => b.includes('\n'))) {
      const lines = block.split('\n').map((l) => l.trimEnd());
      lines.forEach((line, i) => {
        const body = line.trimStart();
        if (body.length < 24 || body.length > 100 || /^(#|\*|\/\/)/.test(body) || !/[=$(){}[\]<>|;]/.test(body)) return;
        const indent = line.length - body.length;
        const mid = indent + body.length / 2;
        let cut = -1;
        for (let k = indent + 8; k <= line.length - 8; k++) if (line[k] === ' ' && (cut < 0 || Math.abs(k - mid) < Math.abs(cut - mid))) cut = k;
        if (cut < 0) return;
        const context = [...lines.slice(Math.max(0, i - 4), i), line.slice(0, cut)].join('\n');
        candidates.push({ context, real: line.slice(cut + 1), doc: d, source: titleOf(doc) });
      });
    }
  });
  return choiceTask('domain_completion', 'which snippet completes a line of a Bash / Python example (domain held-out split)',
    candidates, candidates.map((c) => ({ text: c.real, doc: c.doc })), [0.5, 2], o.size, rng);
}

/**
 * The three shipped tasks with the same options.
 *
 * @example
 * const results = await run.evaluate(shippedTasks({ size: 100 }));
 */
export function shippedTasks(options: Partial<ShippedTaskOptions> = {}): Task<LastWordDoc | ChoiceDoc>[] {
  return [lastWordTask(options), realContinuationTask(options), domainCompletionTask(options)] as Task<LastWordDoc | ChoiceDoc>[];
}
