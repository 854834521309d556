/**
 * Results of training runs kept for comparison: one summary row per run in `<dir>/runs.jsonl` (read back
 * as an arquero table, across notebooks and sessions) and each run's curves in `<dir>/<run>/`
 * (`steps.jsonl`, `evals.jsonl`, `forgetting.jsonl`, `tasks.jsonl`, `run.json`), also as a TensorBoard event file
 * (`events.out.tfevents.*`, tags as the Hugging Face Trainer's TensorBoard callback names them), so
 * `tensorboard --logdir <dir>` shows every run. Nothing is ever overwritten: a run name already used gets
 * a numeric suffix.
 */
import * as fs from 'fs';
import * as path from 'path';
import * as aq from 'arquero';
import type { ColumnTable } from 'arquero';
import { writeFileAtomic } from '../io/atomic';
import { eventFileBytes, eventFileName, type ScalarEvent } from '../io/tfevents';
import type { EvalMetrics, StepMetrics } from '../train/trainer';
import { evalLogEntry, stepLogEntry, tensorboardScalars, type LogEntry } from '../train/trainer-state';
import type { ForgettingRow, TaskRow } from './forgetting';

/** One run's summary: a row of {@link RunLog.table}. */
export interface RunRecord {
  /** Unique name within the log (its folder name). */
  run: string;
  /** Training method, e.g. `continued-pretraining`, `sft`. */
  method: string;
  /** What was trained, e.g. `full`, `last 1 layer + head`, `lora r=8`. */
  strategy: string;
  /** Base model name or folder. */
  base: string;
  /** ISO time the run finished. */
  finishedAt: string;
  steps: number;
  tokens: number;
  wallMs: number;
  tokensPerSec: number;
  trainableParams: number;
  /** 100 · trainable / base parameters. */
  trainablePercent: number;
  /** Mean training loss over the last 10% of steps (at least 1). */
  finalTrainLoss: number | null;
  /** Last held-out loss (null without eval data). */
  finalEvalLoss: number | null;
  /** General-set loss change from before training (null without forgetting tracking). */
  forgettingDelta: number | null;
  /** Target-set loss change from before training (negative = learned; null without tracking). */
  targetDelta: number | null;
  /** Method config as JSON (functions and large arrays elided). */
  config: string;
}

/** Curves stored beside a run's summary. */
export interface RunDetails {
  steps?: readonly StepMetrics[];
  evals?: readonly EvalMetrics[];
  forgetting?: readonly ForgettingRow[];
  /** Task scores the forgetting tracker measured (`tasks.jsonl`). */
  tasks?: readonly TaskRow[];
}

const jsonl = (rows: readonly unknown[]) => rows.map((r) => JSON.stringify(r)).join('\n') + (rows.length ? '\n' : '');

/** Mean of the last 10% (≥ 1) of losses, the usual "final loss" that ignores one noisy batch. */
export function finalLoss(history: readonly Pick<StepMetrics, 'loss'>[]): number | null {
  if (history.length === 0) return null;
  const tail = history.slice(-Math.max(1, Math.round(history.length / 10)));
  return tail.reduce((s, m) => s + m.loss, 0) / tail.length;
}

/** JSON of a config for the log: functions, tensors and long arrays are summarised, not dumped. */
export function configJson(config: unknown): string {
  return JSON.stringify(config ?? {}, (_k, v: unknown) => {
    if (typeof v === 'function') return `[function ${(v as { name?: string }).name || 'anonymous'}]`;
    if (Array.isArray(v) && v.length > 20) return `[${v.length} items]`;
    if (ArrayBuffer.isView(v)) return `[${(v as unknown as ArrayLike<number>).length} values]`;
    if (v && typeof v === 'object' && 'dataId' in v) return '[tensor]';
    return v;
  });
}

/**
 * The TensorBoard scalars of a run: each step's and eval's HF log entry under HF's TensorBoard tags
 * (`train/loss`, `train/learning_rate`, `train/grad_norm`, `eval/loss`, `train/rewards/chosen`, …) and
 * each forgetting measurement as an extra eval set (`eval/<set>_loss`, `eval/<set>_perplexity`, as HF
 * names metrics of several eval datasets). Wall times are rebuilt from the run's end time, duration and
 * each step's elapsed time; evals and forgetting rows take the time of their step.
 */
export function runScalars(record: Pick<RunRecord, 'finishedAt' | 'wallMs'>, details: RunDetails): ScalarEvent[] {
  const end = Date.parse(record.finishedAt);
  const start = Number.isFinite(end) ? end - record.wallMs : Date.now();
  const stepTime = new Map<number, number>([[0, start / 1000]]);
  for (const m of details.steps ?? []) stepTime.set(m.step, (start + m.elapsedMs) / 1000);
  const timeOf = (step: number) => stepTime.get(step) ?? (Number.isFinite(end) ? end / 1000 : start / 1000);
  const entries: LogEntry[] = [
    ...(details.steps ?? []).map(stepLogEntry),
    ...(details.evals ?? []).map(evalLogEntry),
    ...(details.forgetting ?? []).map((r): LogEntry => ({ step: r.step, [`eval_${r.set}_loss`]: r.loss, [`eval_${r.set}_perplexity`]: r.perplexity })),
    ...(details.tasks ?? []).map((r): LogEntry => ({ step: r.step, [`eval_${r.task}_${r.metric}`]: r.value })),
  ];
  return entries.flatMap((e) => Object.entries(tensorboardScalars(e))
    .filter(([, value]) => Number.isFinite(value))
    .map(([tag, value]) => ({ tag, step: e.step, value, wallTime: timeOf(e.step) })));
}

/**
 * A folder of run results.
 *
 * @example
 * const log = new RunLog('runs/03');
 * log.add({ ...record, run: 'sft-full' }, { steps: result.history, evals: result.evals });
 * showTable(log.table().select('run', 'strategy', 'finalEvalLoss', 'forgettingDelta'));
 */
export class RunLog {
  constructor(readonly dir: string) {}

  /** `<dir>/runs.jsonl`. */
  get file(): string {
    return path.join(this.dir, 'runs.jsonl');
  }

  /** Every recorded run, oldest first (re-read from disk, so other processes' runs appear). */
  records(): RunRecord[] {
    if (!fs.existsSync(this.file)) return [];
    return fs.readFileSync(this.file, 'utf8').split('\n').filter((l) => l.trim()).map((line, i) => {
      try {
        return JSON.parse(line) as RunRecord;
      } catch (e) {
        throw new Error(`${this.file}:${i + 1}: not a JSON line (${(e as Error).message})`);
      }
    });
  }

  /** A run name not yet used here: `name`, else `name-2`, `name-3`, … */
  uniqueName(name: string): string {
    const safe = name.replace(/[^A-Za-z0-9_.=-]+/g, '-').replace(/^-+|-+$/g, '') || 'run';
    const taken = new Set(this.records().map((r) => r.run));
    let candidate = safe;
    for (let i = 2; taken.has(candidate) || fs.existsSync(path.join(this.dir, candidate)); i++) candidate = `${safe}-${i}`;
    return candidate;
  }

  /**
   * Records a run: its curves under `<dir>/<run>/` and its summary appended to `runs.jsonl`
   * (rewritten atomically). Returns the record as stored (the name may have gained a suffix).
   */
  add(record: RunRecord, details: RunDetails = {}): RunRecord {
    const stored = { ...record, run: this.uniqueName(record.run) };
    const runDir = path.join(this.dir, stored.run);
    fs.mkdirSync(runDir, { recursive: true });
    writeFileAtomic(path.join(runDir, 'run.json'), JSON.stringify(stored, null, 2) + '\n');
    if (details.steps) writeFileAtomic(path.join(runDir, 'steps.jsonl'), jsonl(details.steps));
    if (details.evals) writeFileAtomic(path.join(runDir, 'evals.jsonl'), jsonl(details.evals));
    if (details.forgetting) writeFileAtomic(path.join(runDir, 'forgetting.jsonl'), jsonl(details.forgetting));
    if (details.tasks) writeFileAtomic(path.join(runDir, 'tasks.jsonl'), jsonl(details.tasks));
    const scalars = runScalars(stored, details);
    if (scalars.length) writeFileAtomic(path.join(runDir, eventFileName(scalars[0].wallTime)), eventFileBytes(scalars, scalars[0].wallTime));
    writeFileAtomic(this.file, jsonl([...this.records(), stored]));
    return stored;
  }

  /** Summaries as an arquero table, one row per run. */
  table(): ColumnTable {
    const rows = this.records();
    return rows.length ? aq.from(rows) : aq.table({ run: [] });
  }

  /** A run's TensorBoard event files (paths), oldest first. */
  eventFiles(run: string): string[] {
    const dir = path.join(this.dir, run);
    return fs.existsSync(dir) ? fs.readdirSync(dir).filter((f) => f.startsWith('events.out.tfevents.')).sort().map((f) => path.join(dir, f)) : [];
  }

  /** A run's stored curves (missing files give empty lists). */
  details(run: string): Required<RunDetails> {
    const dir = path.join(this.dir, run);
    if (!fs.existsSync(path.join(dir, 'run.json'))) throw new Error(`${dir}: no such run (runs: ${this.records().map((r) => r.run).join(', ') || 'none'})`);
    const read = <T>(f: string): T[] => {
      const file = path.join(dir, f);
      return fs.existsSync(file) ? fs.readFileSync(file, 'utf8').split('\n').filter((l) => l.trim()).map((l) => JSON.parse(l) as T) : [];
    };
    return { steps: read('steps.jsonl'), evals: read('evals.jsonl'), forgetting: read('forgetting.jsonl'), tasks: read('tasks.jsonl') };
  }
}
