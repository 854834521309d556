/**
 * Scores of a model on tasks: per-document results and the metrics lm-eval reports for each output type,
 * every one with a confidence interval (Wilson for proportions, a seeded bootstrap for perplexities).
 */
import * as aq from 'arquero';
import type { ColumnTable } from 'arquero';
import type { CausalLM } from '../../model/transformer';
import type { Tokenizer } from '../../tokenizer/tokenizer';
import { withDefaults } from '../../util/options';
import { normalizeAnswer } from '../metrics';
import { bootstrapInterval, meanStderr, wilsonInterval } from './ci';
import { greedyUntil, loglikelihoods, requestDefaults, rollingLoglikelihoods, type RequestOptions } from './requests';
import type { Task, TaskKind } from './task';

/** Options of {@link evaluateTasks}. */
export interface TaskEvalOptions extends RequestOptions {
  /** Score only the first N documents of each task (lm-eval's `--limit`); null: all. */
  limit: number | null;
  /** Level of every interval. */
  confidence: number;
  /** Resamples of the bootstrap intervals (perplexities). */
  bootstrapIters: number;
  /** Seed of the bootstrap. */
  seed: number;
}

/**
 * Defaults of {@link TaskEvalOptions}. Frozen: override by spreading.
 *
 * @example
 * evaluateTasks(model, tok, tasks, { ...taskEvalDefaults, limit: 50 });
 */
export const taskEvalDefaults: Readonly<TaskEvalOptions> = Object.freeze({
  ...requestDefaults, limit: null, confidence: 0.95, bootstrapIters: 1000, seed: 0,
});

/** One metric of one task. */
export interface TaskScore {
  /** lm-eval's metric name: `acc`, `acc_norm`, `acc_mutual_info`, `perplexity`, `exact_match`, `contains`, `word_perplexity`, … */
  metric: string;
  value: number;
  /** Interval bounds at `confidence`. */
  low: number;
  high: number;
  /** Standard error of the mean for per-document metrics (lm-eval's `_stderr`); NaN for corpus-level ones. */
  stderr: number;
  /** How the interval was computed. */
  interval: 'wilson' | 'bootstrap';
  higherIsBetter: boolean;
  /** Documents scored. */
  n: number;
}

/** One document's outcome; which fields are set depends on the task's kind. */
export interface DocResult {
  doc: number;
  /** Log-likelihood of each choice (`multiple_choice`) or of the target (`loglikelihood`, rolling). */
  lls: number[];
  /** `multiple_choice`: gold index, argmax of lls, argmax of lls / choice length in characters. */
  gold?: number;
  pred?: number;
  predNorm?: number;
  /** `multiple_choice` with `mutualInfo`: each choice's log-likelihood after an empty context, and argmax of lls − these. */
  unconditional?: number[];
  predMutualInfo?: number;
  /** `loglikelihood`: every target token was the argmax. */
  isGreedy?: boolean;
  /** `generate_until`: the greedy continuation and the target. */
  prediction?: string;
  target?: string;
  /** Loglikelihood_rolling: words and UTF-8 bytes of the text, as lm-eval counts them. */
  words?: number;
  bytes?: number;
}

/** Scores and per-document results of one task. */
export interface TaskResult {
  task: string;
  kind: TaskKind;
  scores: TaskScore[];
  docs: DocResult[];
}

const utf8 = new TextEncoder();

/** lm-eval's word count: `len(re.split(r"\s+", text))` (leading/trailing whitespace count as empty words). */
export function countWords(text: string): number {
  return text.split(/\s+/).length;
}

/** UTF-8 bytes of a text (lm-eval's `count_bytes`). */
export function countBytes(text: string): number {
  return utf8.encode(text).length;
}

const requestOptions = (o: TaskEvalOptions): RequestOptions => ({ batchSize: o.batchSize, prefix: o.prefix });

function argmax(xs: readonly number[]): number {
  let best = 0;
  for (let i = 1; i < xs.length; i++) if (xs[i] > xs[best]) best = i; // first maximum, as numpy
  return best;
}

function proportion(metric: string, hits: readonly boolean[], confidence: number): TaskScore {
  const k = hits.filter(Boolean).length;
  const n = hits.length;
  return {
    metric, value: n ? k / n : NaN, ...wilsonInterval(k, n, confidence), stderr: meanStderr(hits.map(Number)),
    interval: 'wilson', higherIsBetter: true, n,
  };
}

function corpusLevel<T>(metric: string, docs: readonly T[], statistic: (s: readonly T[]) => number, o: TaskEvalOptions, higherIsBetter = false): TaskScore {
  return {
    metric, value: statistic(docs), ...bootstrapInterval(docs, statistic, { iters: o.bootstrapIters, seed: o.seed, confidence: o.confidence }),
    stderr: NaN, interval: 'bootstrap', higherIsBetter, n: docs.length,
  };
}

const sum = (xs: readonly number[]) => xs.reduce((a, b) => a + b, 0);

function multipleChoice(model: CausalLM, tok: Tokenizer, t: Task<unknown>, o: TaskEvalOptions): TaskResult {
  const choices = t.docs.map((_, i) => t.choices(i));
  const requests = choices.flatMap((cs, i) => cs.map((c) => ({ context: t.prompt(i), continuation: t.delimiter + c })));
  const docOf = choices.flatMap((cs, i) => cs.map((_, j) => `task "${t.name}", document ${i}, choice ${j}`));
  const lls = loglikelihoods(model, tok, requests, requestOptions(o), (k) => docOf[k]).map((r) => r.ll);
  // lm-eval's unconditional request is ("", choice): no prompt and no delimiter.
  const free = t.mutualInfo
    ? loglikelihoods(model, tok, choices.flat().map((c) => ({ context: '', continuation: c })), requestOptions(o), (k) => `${docOf[k]} (without the prompt)`).map((r) => r.ll)
    : [];
  let at = 0;
  const docs = choices.map((cs, i): DocResult => {
    const from = at;
    const ll = lls.slice(from, (at += cs.length));
    const d: DocResult = { doc: i, lls: ll, gold: t.gold(i, cs), pred: argmax(ll), predNorm: argmax(ll.map((x, j) => x / cs[j].length)) };
    if (!t.mutualInfo) return d;
    const unconditional = free.slice(from, at);
    return { ...d, unconditional, predMutualInfo: argmax(ll.map((x, j) => x - unconditional[j])) };
  });
  return {
    task: t.name, kind: t.kind, docs,
    scores: [
      proportion('acc', docs.map((d) => d.pred === d.gold), o.confidence), proportion('acc_norm', docs.map((d) => d.predNorm === d.gold), o.confidence),
      ...(t.mutualInfo ? [proportion('acc_mutual_info', docs.map((d) => d.predMutualInfo === d.gold), o.confidence)] : []),
    ],
  };
}

function loglikelihood(model: CausalLM, tok: Tokenizer, t: Task<unknown>, o: TaskEvalOptions): TaskResult {
  const r = loglikelihoods(model, tok, t.docs.map((_, i) => ({ context: t.prompt(i), continuation: t.delimiter + t.text(i) })), requestOptions(o), (i) => `task "${t.name}", document ${i}`);
  const docs = r.map((x, i): DocResult => ({ doc: i, lls: [x.ll], isGreedy: x.isGreedy }));
  const perplexity = (s: readonly DocResult[]) => Math.exp(-sum(s.map((d) => d.lls[0])) / s.length);
  return {
    task: t.name, kind: t.kind, docs,
    scores: [proportion('acc', docs.map((d) => d.isGreedy!), o.confidence), corpusLevel('perplexity', docs, perplexity, o)],
  };
}

function generateUntil(model: CausalLM, tok: Tokenizer, t: Task<unknown>, o: TaskEvalOptions): TaskResult {
  const predictions = greedyUntil(model, tok, t.docs.map((_, i) => t.prompt(i)), { prefix: o.prefix, until: t.until, maxNewTokens: t.maxNewTokens });
  const docs = predictions.map((prediction, i): DocResult => ({ doc: i, lls: [], prediction, target: t.text(i) }));
  const norm = (d: DocResult) => [normalizeAnswer(d.prediction!), normalizeAnswer(d.target!)] as const;
  return {
    task: t.name, kind: t.kind, docs,
    scores: [
      proportion('exact_match', docs.map((d) => { const [p, a] = norm(d); return p === a; }), o.confidence),
      proportion('contains', docs.map((d) => { const [p, a] = norm(d); return a.length > 0 ? p.includes(a) : p.length === 0; }), o.confidence),
    ],
  };
}

function rolling(model: CausalLM, tok: Tokenizer, t: Task<unknown>, o: TaskEvalOptions): TaskResult {
  const texts = t.docs.map((_, i) => t.text(i));
  const r = rollingLoglikelihoods(model, tok, texts, requestOptions(o), (i) => `task "${t.name}", document ${i}`);
  const docs = r.map((x, i): DocResult => ({ doc: i, lls: [x.ll], words: countWords(texts[i]), bytes: countBytes(texts[i]) }));
  const ll = (s: readonly DocResult[]) => sum(s.map((d) => d.lls[0]));
  const per = (s: readonly DocResult[], k: 'words' | 'bytes') => -ll(s) / sum(s.map((d) => d[k]!));
  return {
    task: t.name, kind: t.kind, docs,
    scores: [
      corpusLevel('word_perplexity', docs, (s) => Math.exp(per(s, 'words')), o),
      corpusLevel('byte_perplexity', docs, (s) => Math.exp(per(s, 'bytes')), o),
      corpusLevel('bits_per_byte', docs, (s) => per(s, 'bytes') / Math.LN2, o),
    ],
  };
}

const scorers: Record<TaskKind, (model: CausalLM, tok: Tokenizer, t: Task<unknown>, o: TaskEvalOptions) => TaskResult> = {
  multiple_choice: multipleChoice, loglikelihood, generate_until: generateUntil, loglikelihood_rolling: rolling,
};

/**
 * Scores a model on tasks (synchronously: safe inside a trainer's step event). Dropout is off.
 *
 * @example
 * const [r] = evaluateTasks(model, tok, [lastWordTask()], { limit: 100 });
 * r.scores; // [{ metric: 'acc', value: 0.12, low: 0.07, high: 0.20, interval: 'wilson', … }, { metric: 'perplexity', … }]
 */
export function evaluateTasks(model: CausalLM, tokenizer: Tokenizer, tasks: Task<unknown> | readonly Task<unknown>[], options: Partial<TaskEvalOptions> = {}): TaskResult[] {
  const o: TaskEvalOptions = withDefaults(taskEvalDefaults, options, 'evaluateTasks');
  const list = Array.isArray(tasks) ? tasks as readonly Task<unknown>[] : [tasks as Task<unknown>];
  const names = new Set<string>();
  for (const t of list) {
    if (names.has(t.name)) throw new Error(`evaluateTasks: two tasks are named "${t.name}"; names must be unique`);
    names.add(t.name);
  }
  return list.map((t) => scorers[t.kind](model, tokenizer, t.limit(o.limit), o));
}

/** One row per task and metric, for a table or a chart. */
export interface TaskScoreRow extends TaskScore {
  /** The model or run measured (empty when not given). */
  run: string;
  task: string;
}

/**
 * The scores as rows (optionally labelled with the run they belong to).
 *
 * @example
 * showTable(aq.from([...taskScoreRows(base, 'base'), ...taskScoreRows(tuned, 'tuned')]));
 */
export function taskScoreRows(results: readonly TaskResult[], run = ''): TaskScoreRow[] {
  return results.flatMap((r) => r.scores.map((s) => ({ run, task: r.task, ...s })));
}

/**
 * The scores as an arquero table: run, task, metric, value, low, high, stderr, interval, n.
 *
 * @example
 * showTable(taskTable({ base: baseResults, tuned: tunedResults }));
 */
export function taskTable(results: readonly TaskResult[] | Readonly<Record<string, readonly TaskResult[]>>): ColumnTable {
  const rows = Array.isArray(results) ? taskScoreRows(results as readonly TaskResult[])
    : Object.entries(results as Record<string, readonly TaskResult[]>).flatMap(([run, r]) => taskScoreRows(r, run));
  return aq.from(rows.map(({ run, task, metric, value, low, high, stderr, interval, n }) => ({ run, task, metric, value, low, high, stderr, interval, n })));
}
