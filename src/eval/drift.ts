/**
 * Drift: how saved model versions (checkpoints, or adapters on their base) score on evaluation sets of
 * different dates, so a model that falls out of date, or a new version that got worse, shows before it ships.
 * Every version is loaded from disk, scored on every set by the same held-out metric, and the result is an
 * arquero table and a chart of metric by version × eval date. Two flags, with a relative `threshold`:
 * `regression` when a version is worse than the version before it on a set, and `drift` when a version is
 * worse on a set than on the oldest set (its quality decays with the date of the data).
 *
 * Versions come from the run log ({@link runVersions}: the model and adapter folders saved under
 * `<log>/<run>/`) or are named by hand; results are appended to `<log>/drift.jsonl` when a log is given.
 *
 * @example
 * const versions = runVersions(lab.runs('runs'), ['sotu-old', 'sotu-new']);
 * const d = await drift(versions, sotuDriftSets(1990), { threshold: 0.05, log: lab.runs('runs') });
 * d.table().print();
 * d.plot().show();
 */
import * as fs from 'fs';
import * as path from 'path';
import { inspect } from 'util';
import * as aq from 'arquero';
import type { ColumnTable } from 'arquero';
import { tokenizeRows, tokenizeDefaults, type SftRow } from '../data/tokenize';
import { loadModel } from '../io/checkpoint';
import { writeFileAtomic } from '../io/atomic';
import { base as loadBase } from '../lab/base';
import { dataset } from '../lab/data';
import type { CausalLM } from '../model/transformer';
import { ADAPTER_CONFIG_FILE, loadAdapter } from '../peft/io';
import type { Tokenizer } from '../tokenizer/tokenizer';
import { tokenStream } from '../train/causal-lm';
import { checkOptions } from '../util/options';
import { Chart } from '../viz/chart';
import { mimeBundleKey } from '../viz/display';
import { escapeHtml } from '../viz/html';
import { tableHtml } from '../viz/table';
import { heldOutLoss, tokenAccuracy, type HeldOut } from './metrics';
import type { RunLog, RunRecord } from './runs';

/** An evaluation set with a date: documents (strings) or SFT rows (prompt/completion or messages). */
export interface DatedSet {
  name: string;
  /** ISO date or year of the data (`'1999'`, `'2024-03-01'`); sets are ordered by it. */
  date: string;
  data: readonly string[] | readonly SftRow[];
}

/** A saved model version: a model folder, or an adapter folder on its base. */
export interface ModelVersion {
  /** Label in tables and charts (unique). */
  name: string;
  /**
   * A model folder (HF layout), or a shipped base name / folder when `adapter` is given (default for an
   * adapter: its `base_model_name_or_path`).
   */
  checkpoint?: string;
  /** A PEFT adapter folder loaded on `checkpoint`. */
  adapter?: string;
  /** The run of the run log this version belongs to. */
  run?: string;
}

/** Options of {@link drift}. */
export interface DriftOptions {
  /** Held-out metric: `loss` and `perplexity` (lower is better) or next-token `accuracy` (higher is better). Default `loss`. */
  metric?: 'loss' | 'perplexity' | 'accuracy';
  /** Relative worsening that flags (default 0.05: 5 % higher loss, or 5 % lower accuracy). */
  threshold?: number;
  /** Window length (default: each model's context). */
  seqLen?: number;
  /** Rows per forward pass (default 16). */
  batchSize?: number;
  /** Most windows (documents) or examples ÷ 8 (rows) scored per set: a cost bound (default 32). */
  maxWindows?: number;
  /** The run log: adds each version's run record (method, strategy, finishedAt) and appends the rows to `<dir>/drift.jsonl`. */
  log?: RunLog;
}

const optionKeys: readonly (keyof DriftOptions)[] = ['metric', 'threshold', 'seqLen', 'batchSize', 'maxWindows', 'log'];

/** One (version, set) of {@link DriftReport.table}. */
export interface DriftRow {
  version: string;
  run: string | null;
  set: string;
  date: string;
  metric: 'loss' | 'perplexity' | 'accuracy';
  value: number;
  /** Tokens (loss) or positions (accuracy) counted. */
  tokens: number;
  /** Relative change from the previous version on this set (null for the first version). */
  vsPrevious: number | null;
  /** Relative change from this version's value on the oldest set (0 on the oldest set). */
  vsOldest: number;
  /** `regression`, `drift`, both joined by `+`, or '' when neither passed the threshold. */
  flag: string;
}

/**
 * Scores each version on each dated set; see {@link DriftReport}. Versions are loaded one at a time
 * and disposed after scoring, so memory holds one model.
 *
 * @example
 * const d = await drift([{ name: 'v1', checkpoint: 'runs/a/final' }, { name: 'v2', checkpoint: 'runs/b/final' }], sotuDriftSets());
 */
export async function drift(versions: readonly ModelVersion[], sets: readonly DatedSet[], options: DriftOptions = {}): Promise<DriftReport> {
  checkOptions(options, optionKeys, 'drift');
  const metric = options.metric ?? 'loss';
  if (!['loss', 'perplexity', 'accuracy'].includes(metric)) throw new Error(`drift: metric must be "loss", "perplexity" or "accuracy" (got "${metric}")`);
  const threshold = options.threshold ?? 0.05;
  if (!(threshold >= 0)) throw new Error(`drift: threshold must be ≥ 0 (got ${threshold})`);
  if (versions.length === 0) throw new Error('drift: no versions given');
  if (sets.length === 0) throw new Error('drift: no evaluation sets given');
  const names = versions.map((v) => v.name);
  const dup = names.find((n, i) => names.indexOf(n) !== i);
  if (dup !== undefined) throw new Error(`drift: version name "${dup}" given twice`);
  sets.forEach((s, i) => {
    if (!s.data?.length) throw new Error(`drift: evaluation set ${i} ("${s.name}") has no data`);
    if (!Number.isFinite(dateValue(s.date))) throw new Error(`drift: evaluation set "${s.name}" has date "${s.date}"; give a year or an ISO date`);
  });
  const ordered = [...sets].sort((a, b) => dateValue(a.date) - dateValue(b.date));
  const records = new Map((options.log?.records() ?? []).map((r) => [r.run, r]));

  const values: { value: number; tokens: number }[][] = [];
  for (const v of versions) {
    const { model, tokenizer } = await loadVersion(v);
    try {
      const row: { value: number; tokens: number }[] = [];
      for (const s of ordered) row.push(await score(model, tokenizer, s, metric, options));
      values.push(row);
    } finally {
      model.dispose();
    }
  }
  const worse = (now: number, ref: number) => (metric === 'accuracy' ? (ref - now) / ref : (now - ref) / ref);
  const rows: DriftRow[] = [];
  versions.forEach((v, i) => ordered.forEach((s, j) => {
    const { value, tokens } = values[i][j];
    const vsPrevious = i > 0 ? worse(value, values[i - 1][j].value) : null;
    const vsOldest = worse(value, values[i][0].value);
    const flag = [vsPrevious !== null && vsPrevious > threshold ? 'regression' : '', vsOldest > threshold ? 'drift' : ''].filter(Boolean).join('+');
    rows.push({ version: v.name, run: v.run ?? null, set: s.name, date: s.date, metric, value, tokens, vsPrevious, vsOldest, flag });
  }));
  const report = new DriftReport(rows, threshold, [...records.values()]);
  if (options.log) appendDrift(options.log, rows);
  return report;
}

/**
 * Versions saved under a run log's run folders: each `<dir>/<run>/**` folder holding a model
 * (`config.json`) or an adapter (`adapter_config.json`), runs in log order, folders in natural order
 * (`checkpoint-50` before `checkpoint-100`). Names are `<run>/<folder>`.
 *
 * @example
 * await run.save(path.join('runs', run.record.run, 'final'));   // keep a run's model beside its log
 * runVersions(lab.runs())                                         // [{ name: 'sft-full/final', checkpoint: …, run: 'sft-full' }]
 */
export function runVersions(log: RunLog, runs?: readonly string[]): ModelVersion[] {
  const known = log.records().map((r) => r.run);
  for (const r of runs ?? []) if (!known.includes(r)) throw new Error(`${log.file}: no run "${r}" (runs: ${known.join(', ') || 'none'})`);
  const out: ModelVersion[] = [];
  for (const run of runs ?? known) {
    for (const dir of savedFolders(path.join(log.dir, run))) {
      const name = `${run}/${path.relative(path.join(log.dir, run), dir).split(path.sep).join('/')}`;
      out.push(fs.existsSync(path.join(dir, 'config.json')) ? { name, checkpoint: dir, run } : { name, adapter: dir, run });
    }
  }
  return out;
}

/**
 * The shipped dated sets: the State of the Union addresses of the general held-out split (1951, 1956,
 * 1977, 1999, 2011, unseen by the shipped base) before and from `year`, each dated by its newest address.
 *
 * @example
 * sotuDriftSets(1990).map((s) => `${s.name} ${s.date}`);   // ['sotu 1951–1977 1977', 'sotu 1999–2011 2011']
 */
export function sotuDriftSets(year = 1990, split: 'train' | 'heldout' = 'heldout'): DatedSet[] {
  const speeches = sotuSpeeches(split);
  const parts = [speeches.filter((s) => s.year < year), speeches.filter((s) => s.year >= year)];
  return parts.map((p, k) => {
    if (p.length === 0) throw new Error(`sotuDriftSets: no ${split} address ${k === 0 ? 'before' : 'from'} ${year} (years: ${speeches.map((s) => s.year).join(', ')})`);
    const years = p.map((s) => s.year);
    return { name: `sotu ${years[0]}–${years.at(-1)}`, date: String(years.at(-1)), data: p.map((s) => s.text) };
  });
}

/** A State of the Union address of the shipped general corpus. */
export interface SotuSpeech {
  year: number;
  president: string;
  text: string;
}

/**
 * The State of the Union addresses in a split of the shipped general corpus, oldest first (their
 * documents start "State of the Union Address by <president>, <year>").
 *
 * @example
 * sotuSpeeches('train').filter((s) => s.year < 1950).length;   // 49
 */
export function sotuSpeeches(split: 'train' | 'heldout' = 'train'): SotuSpeech[] {
  const out: SotuSpeech[] = [];
  for (const text of dataset('general', split)) {
    const m = /^State of the Union Address by (.+), (\d{4})\n/.exec(text);
    if (m) out.push({ year: Number(m[2]), president: m[1], text });
  }
  return out.sort((a, b) => a.year - b.year);
}

/**
 * What {@link drift} measured: one row per version × set (value, change from the previous version and from
 * the oldest set, flag), the threshold, and the run records of the versions' runs.
 */
export class DriftReport {
  constructor(readonly rows: readonly DriftRow[], readonly threshold: number, readonly runs: readonly RunRecord[] = []) {}

  /** The rows as an arquero table; with a run log, joined with each run's method, strategy and finish time. */
  table(): ColumnTable {
    const runs = new Map(this.runs.map((r) => [r.run, r]));
    if (!this.rows.some((x) => x.run !== null && runs.has(x.run))) return aq.from(this.rows);
    return aq.from(this.rows.map((x) => {
      const r = x.run === null ? undefined : runs.get(x.run);
      return { ...x, method: r?.method ?? null, strategy: r?.strategy ?? null, finishedAt: r?.finishedAt ?? null };
    }));
  }

  /** The flagged rows. */
  get flagged(): DriftRow[] {
    return this.rows.filter((r) => r.flag !== '');
  }

  /** Metric by eval date, one line per version; flagged points marked with a red ✕. */
  plot(): Chart {
    const versions = [...new Set(this.rows.map((r) => r.version))];
    const label = (r: DriftRow) => `${r.set} (${r.date})`;
    const metric = this.rows[0]?.metric ?? 'loss';
    const data: Record<string, unknown>[] = versions.map((v) => {
      const rows = this.rows.filter((r) => r.version === v);
      return { type: 'scatter', mode: 'lines+markers', name: v, x: rows.map(label), y: rows.map((r) => r.value) };
    });
    const flagged = this.flagged;
    if (flagged.length) {
      data.push({ type: 'scatter', mode: 'markers', name: `flagged (> ${(100 * this.threshold).toFixed(0)} % worse)`, x: flagged.map(label), y: flagged.map((r) => r.value),
        marker: { color: '#d62728', symbol: 'x', size: 12 }, text: flagged.map((r) => `${r.version}: ${r.flag}`) });
    }
    return new Chart({
      data: data as never,
      layout: { title: { text: `Drift: held-out ${metric} by version and eval date` }, height: 400,
        xaxis: { title: { text: 'evaluation set (date)' }, type: 'category' }, yaxis: { title: { text: metric } },
        legend: { orientation: 'h', y: -0.25 }, margin: { l: 60, r: 30, t: 50, b: 100 } },
    });
  }

  /** The table as text, flagged rows marked. */
  summary(): string {
    const head = `Drift: ${new Set(this.rows.map((r) => r.version)).size} versions × ${new Set(this.rows.map((r) => r.set)).size} sets, ${this.flagged.length} flagged (threshold ${(100 * this.threshold).toFixed(1)} %)`;
    const pct = (x: number | null) => (x === null ? '—' : `${x >= 0 ? '+' : ''}${(100 * x).toFixed(1)} %`);
    return [head, ...this.rows.map((r) => `  ${r.version.padEnd(24)} ${`${r.set} (${r.date})`.padEnd(24)} ${r.metric} ${r.value.toFixed(4)}  vs previous ${pct(r.vsPrevious).padStart(8)}  vs oldest ${pct(r.vsOldest).padStart(8)}  ${r.flag}`)].join('\n');
  }

  [inspect.custom](): string {
    return this.summary();
  }

  /** Notebook output: the headline, the table and the chart. */
  [mimeBundleKey](): { 'text/plain': string; 'text/html': string } {
    const html = `<div class="tunelab-drift"><div style="font-weight:bold;margin-bottom:4px">${escapeHtml(this.summary().split('\n')[0])}</div>` +
      `${tableHtml(this.table(), { limit: 50 })}${this.plot().html()}</div>`;
    return { 'text/plain': this.summary(), 'text/html': html };
  }
}

// Years sort as their 1 January; ISO dates as themselves.
function dateValue(date: string): number {
  return /^\d{4}$/.test(date) ? Date.UTC(Number(date), 0, 1) : Date.parse(date);
}

async function loadVersion(v: ModelVersion): Promise<{ model: CausalLM; tokenizer: Tokenizer }> {
  if (!v.adapter) {
    if (!v.checkpoint) throw new Error(`drift: version "${v.name}" names neither a checkpoint nor an adapter`);
    const isFolder = fs.existsSync(path.join(v.checkpoint, 'config.json'));
    const loaded = isFolder ? await loadModel(v.checkpoint) : await loadBase(v.checkpoint);
    if (!loaded.tokenizer) {
      loaded.model.dispose();
      throw new Error(`drift: version "${v.name}": ${path.join(v.checkpoint, 'tokenizer.json')} is missing`);
    }
    return { model: loaded.model, tokenizer: loaded.tokenizer };
  }
  const configFile = path.join(v.adapter, ADAPTER_CONFIG_FILE);
  if (!fs.existsSync(configFile)) throw new Error(`drift: version "${v.name}": ${configFile} is missing (not an adapter folder)`);
  let baseName = v.checkpoint;
  if (!baseName) {
    const given = (JSON.parse(fs.readFileSync(configFile, 'utf8')) as { base_model_name_or_path?: unknown }).base_model_name_or_path;
    if (typeof given !== 'string' || !given) throw new Error(`drift: version "${v.name}": ${configFile} has no base_model_name_or_path; give the version a checkpoint`);
    // A relative folder is read from the working directory, else beside the adapter.
    const beside = path.join(v.adapter, given);
    baseName = !fs.existsSync(given) && fs.existsSync(path.join(beside, 'config.json')) ? beside : given;
  }
  const b = await loadBase(baseName);
  try {
    loadAdapter(b.model, v.adapter);
  } catch (e) {
    b.model.dispose();
    throw e;
  }
  return { model: b.model, tokenizer: b.tokenizer };
}

async function score(model: CausalLM, tok: Tokenizer, set: DatedSet, metric: 'loss' | 'perplexity' | 'accuracy', o: DriftOptions): Promise<{ value: number; tokens: number }> {
  const seqLen = o.seqLen ?? model.config.contextLength - model.reservedPositions();
  const windows = o.maxWindows ?? 32;
  let held: HeldOut;
  if ((set.data as readonly unknown[]).every((d) => typeof d === 'string')) {
    held = { tokens: tokenStream(tok, set.data as readonly string[]).slice(0, windows * seqLen + 1) };
  } else {
    held = { examples: tokenizeRows(set.data as readonly SftRow[], tok, { ...tokenizeDefaults, maxLength: seqLen + 1 }).examples.slice(0, windows * 8) };
  }
  const options = { seqLen, batchSize: o.batchSize ?? 16, tokens: tok };
  if (metric === 'accuracy') {
    const a = tokenAccuracy(model, held, options);
    return { value: a.accuracy, tokens: a.total };
  }
  const r = await heldOutLoss(model, held, options);
  return { value: metric === 'loss' ? r.loss : r.perplexity, tokens: r.tokens };
}

// Model and adapter folders under a run folder (not inside one another), skipping hidden temps of saves in progress.
function savedFolders(dir: string): string[] {
  if (!fs.existsSync(dir)) return [];
  const out: string[] = [];
  const walk = (d: string) => {
    // A saved folder is one version; its subfolders (an adapter's base/) are not versions of their own.
    if (d !== dir && (fs.existsSync(path.join(d, 'config.json')) || fs.existsSync(path.join(d, ADAPTER_CONFIG_FILE)))) {
      out.push(d);
      return;
    }
    const subs = fs.readdirSync(d, { withFileTypes: true }).filter((e) => e.isDirectory() && !e.name.startsWith('.')).map((e) => e.name);
    for (const s of subs.sort(new Intl.Collator('en', { numeric: true }).compare)) walk(path.join(d, s));
  };
  walk(dir);
  return out;
}

function appendDrift(log: RunLog, rows: readonly DriftRow[]): void {
  const file = path.join(log.dir, 'drift.jsonl');
  fs.mkdirSync(log.dir, { recursive: true });
  const before = fs.existsSync(file) ? fs.readFileSync(file, 'utf8') : '';
  const at = new Date().toISOString();
  writeFileAtomic(file, before + rows.map((r) => JSON.stringify({ evaluatedAt: at, ...r })).join('\n') + '\n');
}
