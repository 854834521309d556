/**
 * Side-by-side comparison of fine-tuning strategies (full, frozen subset, every PEFT method) on the
 * same data, budget and seed: one table (trainable share, losses, forgetting, speed, memory, size on
 * disk, weights held, where a QLoRA strategy shows what its quantized base saves) and one chart (params
 * vs loss vs forgetting), as in "LoRA Learns Less and Forgets Less" (arXiv 2405.09673).
 */
import * as fs from 'fs';
import * as path from 'path';
import * as aq from 'arquero';
import type { ColumnTable } from 'arquero';
import { peft } from '../peft/peft';
import { saveAdapter } from '../peft/io';
import { saveModel } from '../io/checkpoint';
import { weightBytes } from '../model/quant-model';
import { peftChart, type PeftResult } from '../viz/charts';
import type { CausalLM } from '../model/transformer';
import type { RunLog, RunRecord } from '../eval/runs';
import type { PretrainConfig } from '../train/pretrain';
import type { SftConfig } from '../train/sft';

/** What a comparison needs of a finished run (the fluent API's `Run`). */
export interface ComparedRun {
  readonly model: CausalLM;
  readonly record: RunRecord;
  readonly runLog: RunLog;
  readonly result: { history: readonly { peakBytes?: number }[] };
  dispose(): void;
}

/** What a comparison needs of a builder (the fluent API's `Lab`): a name and the two training verbs. */
export interface StrategyBuilder<R extends ComparedRun> {
  name(name: string): this;
  sft(config: Partial<SftConfig>): Promise<R>;
  pretrain(config: Partial<PretrainConfig>): Promise<R>;
}

/** How each strategy of a comparison trains: the method and its config (shared by every strategy). */
export type CompareMethod = { method: 'sft'; config?: Partial<SftConfig> } | { method: 'pretrain'; config?: Partial<PretrainConfig> };

/** One strategy's row of {@link Comparison.table}. */
export interface ComparisonRow {
  strategy: string;
  run: string;
  trainableParams: number;
  /** 100 · trainable / base parameters. */
  trainablePercent: number;
  finalTrainLoss: number | null;
  finalEvalLoss: number | null;
  /** General held-out loss change (needs `.track()`). */
  forgetting: number | null;
  tokensPerSec: number;
  wallSeconds: number;
  /** Peak tensor memory of one training step (MiB), from tfjs's profiler. */
  peakMiB: number | null;
  /** Weights the trained model holds (MiB): its base, quantized ones at their packed size (QLoRA), plus adapters. */
  weightMiB: number;
  /** What must be stored to use the result: the adapter folder, or the whole model for full / frozen. */
  diskMiB: number;
}

const MiB = 1024 * 1024;

function folderBytes(dir: string): number {
  return fs.readdirSync(dir).reduce((s, f) => s + fs.statSync(path.join(dir, f)).size, 0);
}

/** The results of {@link compareStrategies}: its runs, a table and a chart. */
export class Comparison<R extends ComparedRun = ComparedRun> {
  constructor(readonly runs: readonly R[], readonly rows: readonly ComparisonRow[]) {}

  /** One row per strategy. */
  table(): ColumnTable {
    return aq.from(this.rows);
  }

  /** Shows trainable params vs held-out loss vs forgetting. */
  plot(): void {
    const results: PeftResult[] = this.rows.map((r) => ({
      method: r.strategy, trainableParams: r.trainableParams, loss: r.finalEvalLoss ?? r.finalTrainLoss ?? NaN, forgetting: r.forgetting ?? 0,
    }));
    peftChart(results, { title: 'Fine-tuning strategies compared' }).show();
  }

  /** Frees every run's model. */
  dispose(): void {
    for (const r of this.runs) r.dispose();
  }
}

/**
 * Trains each strategy from the same starting builder (data, eval, tracking, log) with the same method
 * and config, one after another, saves what each produces into its run folder, and tabulates.
 *
 * @example
 * const start = lab.base('tiny-llama').data(rows).eval(held).track();
 * const cmp = await compareStrategies(start, {
 *   full: (l) => l.full(), 'last block': (l) => l.freeze({ lastLayers: 1 }), 'lora r=8': (l) => l.lora({ r: 8 }),
 * }, { method: 'sft', config: { maxSteps: 100 } });
 * cmp.plot();
 */
export async function compareStrategies<L extends StrategyBuilder<R>, R extends ComparedRun>(
  start: L, strategies: Record<string, (lab: L) => L>, how: CompareMethod,
): Promise<Comparison<R>> {
  const names = Object.keys(strategies);
  if (names.length === 0) throw new Error('compare: give at least one strategy');
  const runs: R[] = [];
  const rows: ComparisonRow[] = [];
  for (const name of names) {
    const lab = strategies[name](start).name(name);
    let peakBytes: number | null = null;
    const config = { ...how.config, profileMemory: true };
    const run = how.method === 'sft' ? await lab.sft(config) : await lab.pretrain(config);
    peakBytes = run.result.history.find((m) => m.peakBytes !== undefined)?.peakBytes ?? null;
    const dir = path.join(run.runLog.dir, run.record.run, 'weights');
    const adapters = peft(run.model).activeNames;
    if (adapters.length > 0) for (const a of adapters) await saveAdapter(run.model, path.join(dir, a), a);
    else await saveModel(dir, run.model);
    const r = run.record;
    rows.push({
      strategy: name, run: r.run, trainableParams: r.trainableParams, trainablePercent: r.trainablePercent,
      finalTrainLoss: r.finalTrainLoss, finalEvalLoss: r.finalEvalLoss, forgetting: r.forgettingDelta,
      tokensPerSec: r.tokensPerSec, wallSeconds: r.wallMs / 1000, peakMiB: peakBytes === null ? null : peakBytes / MiB,
      weightMiB: (weightBytes(run.model).total + [...run.model.adapterParams.values()].reduce((s, p) => s + 4 * p.variable.size, 0)) / MiB,
      diskMiB: (adapters.length > 0 ? adapters.reduce((s, a) => s + folderBytes(path.join(dir, a)), 0) : folderBytes(dir)) / MiB,
    });
    runs.push(run);
  }
  return new Comparison(runs, rows);
}
