/**
 * The workflow's checks as fluent verbs: bias amplification of a run against the model it started from
 * (`run.bias(data)`), drift of saved versions on dated sets (`lab.drift()`), and instruction data distilled
 * from a teacher (`lab.distill(teacher)`). Thin wrappers: the measures live in src/eval and src/data.
 */
import { cellText } from '../data/text';
import { distill, modelTeacher, seedTasks, type DistillConfig, type Distilled, type SeedTask, type Teacher } from '../data/distill';
import type { SftRow } from '../data/tokenize';
import { biasReport, pronounProbe, type BiasOptions, type BiasProbe, type BiasReport, type ScoredModel } from '../eval/bias';
import { drift, runVersions, sotuDriftSets, type DatedSet, type DriftOptions, type DriftReport, type ModelVersion } from '../eval/drift';
import { RunLog } from '../eval/runs';
import { checkOptions } from '../util/options';
import { base as loadBase } from './base';
import { dataKind, dataset, toDocuments, toSftRows, type LabData } from './data';

/** What {@link runBias} needs of a run (a `Run` fits). */
export interface BiasRun extends ScoredModel {
  readonly record: { readonly base: string };
  readonly parent?: ScoredModel;
}

/**
 * The texts of data as the bias measure counts them: documents as they are, SFT rows as their text,
 * prompt + completion, or message contents joined by newlines.
 *
 * @example
 * dataTexts([{ prompt: 'Q', completion: 'A' }]);   // ['Q\nA']
 */
export function dataTexts(data: LabData, what = 'data'): string[] {
  if (dataKind(data) === 'documents') return toDocuments(data, what);
  const fields = ['text', 'prompt', 'completion', 'messages'];
  return toSftRows(data, what).map((row: SftRow) => fields.filter((f) => f in row).map((f) => cellText((row as unknown as Record<string, unknown>)[f])).join('\n'));
}

/**
 * Bias amplification of a run: its model against the model it started from (the previous stage's, or
 * the base loaded again), beside the skew of `data` (the run's fine-tuning data). See `biasReport`.
 *
 * @example
 * const report = await runBias(run, lab.dataset('instructions'));   // what run.bias(…) does
 */
export async function runBias(run: BiasRun, data: LabData, probe: BiasProbe = pronounProbe, options: Pick<BiasOptions, 'tolerance' | 'batchSize'> = {}): Promise<BiasReport> {
  checkOptions(options, ['tolerance', 'batchSize'], 'bias');
  const texts = dataTexts(data, 'bias data');
  const start = run.parent ?? (await loadBase(run.record.base));
  try {
    return biasReport(probe, { base: start, tuned: run, data: texts, ...options });
  } finally {
    if (!run.parent) start.model.dispose();
  }
}

/** Options of {@link labDrift}: drift's options, the run-log folder, and the sets. */
export interface LabDriftOptions extends Omit<DriftOptions, 'log'> {
  /** Run-log folder whose runs' saved folders are the versions (default `runs`). */
  dir?: string;
  /** Dated evaluation sets (default: the shipped State of the Union sets before / from 1990). */
  sets?: readonly DatedSet[];
}

/**
 * Drift of saved versions: given versions, or those saved under the named runs' folders of the run log
 * (all runs when none are named), on dated sets; rows are appended to the log's `drift.jsonl`.
 *
 * @example
 * await labDrift(['sotu-old', 'sotu-new'], { threshold: 0.05 });   // what lab.drift(…) does
 */
export async function labDrift(versions?: readonly ModelVersion[] | readonly string[], options: LabDriftOptions = {}): Promise<DriftReport> {
  const { dir = 'runs', sets, ...rest } = options;
  const log = new RunLog(dir);
  const given = versions && versions.length > 0 && typeof versions[0] !== 'string' ? (versions as readonly ModelVersion[]) : runVersions(log, versions as readonly string[] | undefined);
  if (given.length === 0) throw new Error(`drift: no saved model or adapter folder under the runs of ${log.file} (save runs with run.save(path.join('${dir}', run.record.run, 'final')))`);
  return drift(given, sets ?? sotuDriftSets(1990), { ...rest, log });
}

/**
 * Distilled instruction data from a teacher: a `Teacher` (e.g. `endpointTeacher(url, { model })`), or a
 * model with its tokenizer (a `Run` or `BaseModel`); seeds default to 20 shipped instruction rows.
 *
 * @example
 * const d = await labDistill(teacherRun, undefined, { numInstructions: 40 });   // what lab.distill(…) does
 */
export function labDistill(teacher: Teacher | (ScoredModel & { name?: string; record?: { run: string } }), seeds?: readonly SeedTask[], config: Partial<DistillConfig> = {}): Promise<Distilled> {
  const t: Teacher = 'complete' in teacher ? teacher : modelTeacher(teacher.model, teacher.tokenizer, { name: teacher.record?.run ?? teacher.name ?? 'model' });
  return distill(t, seeds ?? seedTasks(dataset('instructions').slice(0, 20) as unknown as SftRow[]), config);
}
