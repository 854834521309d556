/**
 * Train steps of the bench's configs (bench/bench.ts: batch 16 × 64 tokens) on the native engine in two
 * variants, alternated step by step in one process so that load from other processes on a shared machine
 * falls on both alike: 1 thread vs every core (default), or with `--fused` the fused kernels off vs on (every
 * core). Median step time per variant. `--large` adds the large configs.
 *
 * Run: `npx tsx bench/threads.ts [--fused] [--large]` (about a minute; BENCH_STEPS timed steps per variant,
 * default 12). Prints one JSON object on stdout; a readable line per config goes to stderr.
 */
import * as os from 'os';
import { initEngine } from '../src/engine';
import { configureNative, nativeInfo } from '../src/engine/native';
import { CausalLM } from '../src/model';
import { Trainer } from '../src/train/trainer';
import { TokenWindows, causalLmObjective } from '../src/train/causal-lm';
import { Rng } from '../src/util/rng';
import { logger, machineRecord, median, round } from './common';

const BATCH = 16;
const SEQ = 64;
const shared = { vocabSize: 512, contextLength: SEQ, tieEmbeddings: true, dropout: 0, dModel: 128, nLayers: 4, nHeads: 4 };
const large = { ...shared, dModel: 384, nLayers: 6, nHeads: 6 };
const configs = [
  { name: 'gpt2-ref', ...shared, family: 'gpt2' as const, dFf: 512 },
  { name: 'llama-ref', ...shared, family: 'llama' as const, dFf: 344 },
  ...(process.argv.includes('--large')
    ? [{ name: 'gpt2-large', ...large, family: 'gpt2' as const, dFf: 1536 }, { name: 'llama-large', ...large, family: 'llama' as const, dFf: 1024 }]
    : []),
];

async function main(): Promise<void> {
  const log = logger('threads');
  const load = os.loadavg();
  await initEngine({ backend: 'wasm' });
  const cores = os.availableParallelism();
  if (!configureNative({ threads: cores }).active) throw new Error(`native GEMM off: ${nativeInfo().reason}`);
  const steps = Number(process.env.BENCH_STEPS ?? 12);
  const fused = process.argv.includes('--fused');
  // Variants by label: threads compared by count, fused kernels by off (0) and on (1).
  const counts = fused ? [0, 1] : [...new Set([1, cores])];
  const apply = (v: number) => configureNative(fused ? { threads: cores, fused: v === 1 } : { threads: v });
  const results = [];
  for (const { name, ...config } of configs) {
    const model = CausalLM.create(config, { seed: 1 });
    const rng = new Rng(1234);
    const ids = new Int32Array(8 * BATCH * SEQ + 1).map(() => rng.int(config.vocabSize));
    const trainer = new Trainer(model, causalLmObjective, new TokenWindows(ids, SEQ, BATCH, 7), { lr: 1e-3, maxSteps: 1_000_000, schedule: 'constant' });
    for (const t of counts) { apply(t); await trainer.trainStep(); await trainer.trainStep(); }
    const times = new Map<number, number[]>(counts.map((t) => [t, []]));
    for (let s = 0; s < steps; s++) {
      for (const t of s % 2 ? [...counts].reverse() : counts) {
        apply(t);
        const t0 = performance.now();
        await trainer.trainStep();
        times.get(t)!.push(performance.now() - t0);
      }
    }
    const row: Record<string, number | string> = { name };
    for (const t of counts) {
      const ms = median(times.get(t)!);
      row[`ms${t}`] = round(ms);
      row[`tokensPerSec${t}`] = round((BATCH * SEQ * 1000) / ms);
    }
    row.speedup = round((row[`ms${counts[0]}`] as number) / (row[`ms${counts[counts.length - 1]}`] as number), 3);
    log(JSON.stringify(row));
    results.push(row);
    trainer.dispose();
    model.dispose();
  }
  configureNative({ threads: cores, fused: true });
  console.log(JSON.stringify({ unit: 'median train step', steps, compare: fused ? 'fused kernels off (0) / on (1)' : 'threads', variants: counts, machine: machineRecord(load, log), configs: results }, null, 2));
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
