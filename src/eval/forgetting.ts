/**
 * Catastrophic-forgetting tracking: loss and perplexity of named held-out sets (e.g. `general`,
 * `domain`) before training (the baseline, step 0) and at intervals during it, optionally with task scores
 * and their intervals beside them (`tasks`: forgetting in accuracy), reported as curves for
 * `viz.forgettingChart`, a forgetting score, learn-vs-forget points for `viz.paretoChart`, an arquero
 * table and a JSONL file.
 */
import * as fs from 'fs';
import * as path from 'path';
import * as aq from 'arquero';
import type { ColumnTable } from 'arquero';
import { writeFileAtomic } from '../io/atomic';
import type { CausalLM } from '../model/transformer';
import type { Tokenizer } from '../tokenizer/tokenizer';
import type { Trainer } from '../train/trainer';
import { withDefaults } from '../util/options';
import type { ForgettingSeries, ParetoPoint } from '../viz/charts';
import { heldOutDefaults, heldOutLossSync, type HeldOut, type HeldOutOptions } from './metrics';
import { evaluateTasks, type TaskEvalOptions } from './tasks/evaluate';
import type { Task } from './tasks/task';

/** One measurement of one set. */
export interface ForgettingRow {
  step: number;
  /** Training tokens seen when measured. */
  tokens: number;
  set: string;
  loss: number;
  perplexity: number;
}

/** One task metric at one measurement, with its interval. */
export interface TaskRow {
  step: number;
  tokens: number;
  task: string;
  metric: string;
  value: number;
  low: number;
  high: number;
}

/** Tasks a tracker scores beside the held-out losses (forgetting in accuracy, not only in loss). */
export interface TrackedTasks {
  tasks: readonly Task<unknown>[];
  tokenizer: Tokenizer;
  /** Options of `evaluateTasks`, e.g. `{ limit: 100 }` to bound the cost of each measurement. */
  options?: Partial<TaskEvalOptions>;
}

/** Options of a {@link ForgettingTracker}. */
export interface ForgettingOptions extends HeldOutOptions {
  /** Record every N optimizer steps when attached to a trainer. */
  every: number;
  /** The set whose drift is forgetting (score and Pareto y axis). */
  generalSet: string;
  /** The set training targets (Pareto x axis). */
  targetSet: string;
  /** Run name, prefixing series names and Pareto labels (empty: none). */
  label: string;
  /** Tasks scored at every measurement too (none by default). */
  tasks?: TrackedTasks;
}

/**
 * Defaults of {@link ForgettingOptions}. Frozen: override by spreading.
 *
 * @example
 * new ForgettingTracker(model, sets, { ...forgettingDefaults, every: 25, seqLen: 128 });
 */
export const forgettingDefaults: Readonly<ForgettingOptions> = Object.freeze({
  ...heldOutDefaults,
  every: 50,
  generalSet: 'general',
  targetSet: 'domain',
  label: '',
});

/** Change of one set between the baseline and the last measurement. */
export interface ForgettingScore {
  set: string;
  baselineLoss: number;
  finalLoss: number;
  /** final − baseline loss: > 0 means the set got worse (forgetting). */
  deltaLoss: number;
  baselinePerplexity: number;
  finalPerplexity: number;
  /** final / baseline perplexity − 1. */
  relativePerplexityIncrease: number;
  /** Step of the last measurement. */
  step: number;
}

/**
 * Evaluates named held-out sets at step 0 and at intervals of training.
 *
 * @example
 * const tracker = new ForgettingTracker(model, { general: { tokens: generalIds }, domain: { tokens: domainIds } }, { every: 25 });
 * tracker.attach(trainer);                 // records the baseline now, then every 25 steps
 * await trainer.train();
 * forgettingChart(tracker.curves('loss', 'general'), { baseline: tracker.score().baselineLoss }).show();
 * tracker.writeJsonl('runs/x');            // runs/x/forgetting.jsonl
 */
export class ForgettingTracker {
  readonly options: Readonly<ForgettingOptions>;
  private readonly data: ForgettingRow[] = [];
  private readonly taskData: TaskRow[] = [];

  constructor(private readonly model: CausalLM, private readonly sets: Readonly<Record<string, HeldOut>>, options: Partial<ForgettingOptions> = {}) {
    this.options = Object.freeze(withDefaults(forgettingDefaults, options, 'ForgettingTracker', ['tokens', 'tasks']));
    if (Object.keys(sets).length === 0) throw new Error('ForgettingTracker: give at least one held-out set');
    if (!Number.isInteger(this.options.every) || this.options.every < 1) throw new Error(`ForgettingTracker: every must be a positive integer (got ${this.options.every})`);
  }

  /** Rows recorded so far (copies). */
  get rows(): ForgettingRow[] {
    return this.data.map((r) => ({ ...r }));
  }

  /** Task rows recorded so far (copies; empty without `tasks`). */
  get taskRows(): TaskRow[] {
    return this.taskData.map((r) => ({ ...r }));
  }

  /** Evaluates every set (and task) now and stores rows for (step, tokens seen). */
  record(step: number, tokensSeen: number): ForgettingRow[] {
    const t = this.options.tasks;
    if (t) {
      for (const r of evaluateTasks(this.model, t.tokenizer, t.tasks, t.options)) {
        for (const s of r.scores) this.taskData.push({ step, tokens: tokensSeen, task: r.task, metric: s.metric, value: s.value, low: s.low, high: s.high });
      }
    }
    const { seqLen, batchSize, tokens } = this.options; // the held-out measurement's own options
    const added = Object.entries(this.sets).map(([set, heldOut]): ForgettingRow => {
      const r = heldOutLossSync(this.model, heldOut, { seqLen, batchSize, tokens });
      return { step, tokens: tokensSeen, set, loss: r.loss, perplexity: r.perplexity };
    });
    this.data.push(...added);
    return added.map((r) => ({ ...r }));
  }

  /** Records step 0, 0 tokens (before training). */
  baseline(): ForgettingRow[] {
    return this.record(0, 0);
  }

  /**
   * Records the baseline (if none yet) and then every `every` steps of the trainer. Evaluation runs
   * synchronously inside the step event, so weights do not change mid-measurement. Returns the unsubscribe.
   */
  attach(trainer: Pick<Trainer<unknown>, 'on'>): () => void {
    if (!this.data.some((r) => r.step === 0)) this.baseline();
    return trainer.on('step', (m) => {
      if (m.step % this.options.every === 0) this.record(m.step, m.tokens);
    });
  }

  /** The rows as an arquero table. */
  table(): ColumnTable {
    return aq.from(this.rows);
  }

  /** Names of the sets. */
  get setNames(): string[] {
    return Object.keys(this.sets);
  }

  /**
   * Metric against tokens seen, one series per set (or only `set`), for `forgettingChart`.
   *
   * @example
   * forgettingChart(tracker.curves('perplexity'), { metricName: 'perplexity' });
   */
  curves(metric: 'loss' | 'perplexity' = 'loss', set?: string): ForgettingSeries[] {
    const names = set === undefined ? this.setNames : [set];
    return names.map((name) => {
      const rows = this.data.filter((r) => r.set === name).sort((a, b) => a.tokens - b.tokens || a.step - b.step);
      return { name: this.options.label ? `${this.options.label} ${name}` : name, tokens: rows.map((r) => r.tokens), metric: rows.map((r) => r[metric]) };
    });
  }

  /**
   * A task metric against tokens seen with its interval band, one series per tracked task (or only `task`),
   * for `forgettingChart`.
   *
   * @example
   * forgettingChart(tracker.taskCurves('acc'), { metricName: 'accuracy' }); // line + 95 % band per task
   */
  taskCurves(metric = 'acc', task?: string): ForgettingSeries[] {
    const names = [...new Set(this.taskData.filter((r) => r.metric === metric && (task === undefined || r.task === task)).map((r) => r.task))];
    if (names.length === 0) throw new Error(`ForgettingTracker.taskCurves: no task rows for metric "${metric}"${task === undefined ? '' : ` of task "${task}"`} (metrics: ${[...new Set(this.taskData.map((r) => r.metric))].join(', ') || 'none: track tasks with the tasks option'})`);
    return names.map((name) => {
      const rows = this.taskData.filter((r) => r.task === name && r.metric === metric).sort((a, b) => a.tokens - b.tokens || a.step - b.step);
      return {
        name: `${this.options.label ? `${this.options.label} ` : ''}${name} ${metric}`,
        tokens: rows.map((r) => r.tokens), metric: rows.map((r) => r.value), low: rows.map((r) => r.low), high: rows.map((r) => r.high),
      };
    });
  }

  /**
   * Last measurement against the baseline for a set (default the general set).
   *
   * @example
   * tracker.score().deltaLoss > 0 // the general set got worse
   */
  score(set: string = this.options.generalSet): ForgettingScore {
    const rows = this.data.filter((r) => r.set === set);
    const base = rows.find((r) => r.step === 0) ?? rows[0];
    const last = rows.reduce<ForgettingRow | undefined>((a, r) => (!a || r.step >= a.step ? r : a), undefined);
    if (!base || !last) throw new Error(`ForgettingTracker.score: no rows for set "${set}" (sets: ${this.setNames.join(', ')})`);
    return {
      set, step: last.step,
      baselineLoss: base.loss, finalLoss: last.loss, deltaLoss: last.loss - base.loss,
      baselinePerplexity: base.perplexity, finalPerplexity: last.perplexity,
      relativePerplexityIncrease: last.perplexity / base.perplexity - 1,
    };
  }

  /**
   * One point per recorded step: target-set metric (x) against general-set metric (y), for `paretoChart`.
   *
   * @example
   * paretoChart(tracker.paretoPoints({ group: 'full' }));
   */
  paretoPoints(options: { metric?: 'loss' | 'perplexity'; group?: string; target?: string; general?: string } = {}): ParetoPoint[] {
    const metric = options.metric ?? 'loss';
    const target = options.target ?? this.options.targetSet;
    const general = options.general ?? this.options.generalSet;
    const steps = [...new Set(this.data.map((r) => r.step))].sort((a, b) => a - b);
    const points: ParetoPoint[] = [];
    for (const step of steps) {
      const t = this.data.find((r) => r.step === step && r.set === target);
      const g = this.data.find((r) => r.step === step && r.set === general);
      if (!t || !g) continue;
      const label = `${this.options.label ? `${this.options.label} ` : ''}step ${step}`;
      points.push(options.group === undefined ? { label, target: t[metric], general: g[metric] } : { label, target: t[metric], general: g[metric], group: options.group });
    }
    return points;
  }

  /**
   * Writes the rows as JSON lines to `dir/file` atomically (creating `dir`) and returns the path.
   *
   * @example
   * tracker.writeJsonl('runs/lora'); // 'runs/lora/forgetting.jsonl'
   */
  writeJsonl(dir: string, file = 'forgetting.jsonl'): string {
    const target = path.join(dir, file);
    fs.mkdirSync(dir, { recursive: true });
    writeFileAtomic(target, this.data.map((r) => JSON.stringify(r)).join('\n') + (this.data.length ? '\n' : ''));
    return target;
  }
}
