/**
 * tunelab's speed benchmark: train-step and generation throughput of the real Trainer and generate() on
 * synthetic tokens, against the same model and step in PyTorch (bench/torch_bench.py) when it is installed.
 *
 * Run: `npm run -s bench` (= `npx tsx bench/bench.ts`; about 4 minutes on 2 vCPUs; `-s` keeps npm's banner
 * off stdout). Options:
 *   --quick                 reference size only, shorter timings (about 35 s)
 *   --backend cpu|wasm|...  force a backend (default: initEngine's auto-detection; `TUNELAB_BACKEND` works too)
 *   --no-torch              skip the PyTorch comparison
 *   --no-profile            skip the per-kernel profile and the forward/backward/optimizer split
 * PyTorch runs with `TUNELAB_BENCH_PYTHON` (default /usr/bin/python3: Debian's python3-torch), once on 1
 * thread and once on every core (OpenBLAS on all cores, ATen's OpenMP pool on 1: see runTorch). When it
 * cannot be imported, the JSON says so under `torch.note` and the rest of the run is unchanged.
 *
 * Prints one JSON object on stdout; progress goes to stderr. See BENCHMARKS.md for figures and analysis.
 */
import { spawnSync } from 'child_process';
import * as os from 'os';
import * as path from 'path';
import * as tf from '@tensorflow/tfjs';
import { initEngine } from '../src/engine';
import { logger, machineRecord, median, peakRssMiB, round, timeSteps } from './common';
import type { BackendName } from '../src/engine';
import { CausalLM, generate } from '../src/model';
import type { ModelConfig } from '../src/model';
import { Trainer } from '../src/train/trainer';
import { LmBatch, TokenWindows, causalLmObjective } from '../src/train/causal-lm';
import { Rng } from '../src/util/rng';

const BATCH = 16;
const SEQ = 64;
const LR = 1e-3;
/** The project's bar: tfjs-wasm train step at least this fraction of single-threaded PyTorch. */
const BAR = 0.25;

interface BenchCase {
  name: string;
  size: 'reference' | 'large';
  model: Partial<ModelConfig>;
  /** Untimed train steps first (allocations, XNNPACK operator creation, JIT). */
  warmup: number;
  /** Timed steps: at least `minSteps` and at least `budgetMs`. */
  minSteps: number;
  budgetMs: number;
  /** PyTorch is much faster per step, so it gets its own (shorter) budget. */
  torchBudgetS: number;
}

const shared = { vocabSize: 512, contextLength: SEQ, tieEmbeddings: true, dropout: 0 };
/** Reference: 4 layers, d_model 128, 4 heads (0.87M parameters). */
const reference = { ...shared, dModel: 128, nLayers: 4, nHeads: 4 };
/** ~12x the parameters: nanoGPT's shakespeare-char shape (6 layers, 6 heads, d_model 384; 10.9M). */
const large = { ...shared, dModel: 384, nLayers: 6, nHeads: 6 };

function cases(quick: boolean): BenchCase[] {
  const ref = quick ? { warmup: 2, minSteps: 3, budgetMs: 2500, torchBudgetS: 1.5 } : { warmup: 3, minSteps: 5, budgetMs: 12000, torchBudgetS: 4 };
  const big = { warmup: 2, minSteps: 3, budgetMs: 20000, torchBudgetS: 8 };
  const all: BenchCase[] = [
    { name: 'gpt2-ref', size: 'reference', model: { ...reference, family: 'gpt2', dFf: 512 }, ...ref },
    { name: 'llama-ref', size: 'reference', model: { ...reference, family: 'llama', dFf: 344 }, ...ref },
    { name: 'gpt2-large', size: 'large', model: { ...large, family: 'gpt2', dFf: 1536 }, ...big },
    { name: 'llama-large', size: 'large', model: { ...large, family: 'llama', dFf: 1024 }, ...big },
  ];
  return quick ? all.filter((c) => c.size === 'reference') : all;
}

interface Options {
  quick: boolean;
  backend?: BackendName;
  torch: boolean;
  profile: boolean;
}

/** A bad command line: reported as one line, without a stack. */
class UsageError extends Error {}

function parseArgs(argv: string[]): Options {
  const o: Options = { quick: false, torch: true, profile: true };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--quick') o.quick = true;
    else if (a === '--no-torch') o.torch = false;
    else if (a === '--no-profile') o.profile = false;
    else if (a === '--backend' || a.startsWith('--backend=')) {
      const v = a.includes('=') ? a.slice(a.indexOf('=') + 1) : argv[++i];
      const allowed = ['cpu', 'wasm', 'tensorflow', 'tensorflow-gpu'];
      if (!v || !allowed.includes(v)) throw new UsageError(`--backend must be one of ${allowed.join(', ')} (got ${v ?? 'nothing'})`);
      o.backend = v as BackendName;
    } else if (a === '--help' || a === '-h') {
      process.stderr.write('usage: tsx bench/bench.ts [--quick] [--backend cpu|wasm] [--no-torch] [--no-profile]\n');
      process.exit(0);
    } else throw new UsageError(`unknown option ${a} (try --help)`);
  }
  return o;
}

const log = logger('bench');
const mib = (bytes: number) => round(bytes / 2 ** 20);
/** Peak resident set of this process so far (Node reports maxRSS in KiB). */

/** Size of the wasm heap (it grows, never shrinks), when the backend is wasm. */
function wasmHeapMiB(): number | undefined {
  const b = tf.backend() as unknown as { wasm?: { HEAPU8?: Uint8Array } };
  return b.wasm?.HEAPU8 ? mib(b.wasm.HEAPU8.byteLength) : undefined;
}

/** Deterministic synthetic token stream: enough windows for 8 distinct batches, cycled by TokenWindows. */
function syntheticTokens(vocab: number): Int32Array {
  const rng = new Rng(1234);
  const ids = new Int32Array(8 * BATCH * SEQ + 1);
  for (let i = 0; i < ids.length; i++) ids[i] = rng.int(vocab);
  return ids;
}

function makeTrainer(model: CausalLM): Trainer<LmBatch> {
  // Constant lr, so the step is the same at step 3 and step 300; clipping (maxGradNorm 1) is the default.
  return new Trainer(model, causalLmObjective, new TokenWindows(syntheticTokens(model.config.vocabSize), SEQ, BATCH, 7), {
    lr: LR, maxSteps: 1_000_000, schedule: 'constant',
  });
}

interface TrainFigures {
  warmupSteps: number;
  timedSteps: number;
  stepMs: number;
  tokensPerSec: number;
  /** Median step time and its tokens/s: less sensitive than the mean to other load on a shared machine. */
  medianStepMs: number;
  medianTokensPerSec: number;
  firstLoss: number;
  lastLoss: number;
  tensorsBefore: number;
  tensorsAfter: number;
  /** True when the tensor count after every timed step was the same. */
  tensorsFlat: boolean;
}

async function timeTraining(trainer: Trainer<LmBatch>, c: BenchCase): Promise<TrainFigures> {
  let firstLoss = NaN;
  for (let i = 0; i < c.warmup; i++) {
    const r = await trainer.trainStep();
    if (i === 0) firstLoss = r.loss;
  }
  const t = await timeSteps(() => trainer.trainStep(), c);
  const steps = t.times.length;
  return {
    warmupSteps: c.warmup,
    timedSteps: steps,
    stepMs: round(t.elapsedMs / steps),
    tokensPerSec: round((t.tokens * 1000) / t.elapsedMs),
    medianStepMs: round(median(t.times)),
    medianTokensPerSec: round((BATCH * SEQ * 1000) / median(t.times)),
    firstLoss: round(firstLoss, 4),
    lastLoss: round(t.lastLoss, 4),
    tensorsBefore: t.tensorsBefore,
    tensorsAfter: t.tensorsAfter,
    tensorsFlat: t.tensorsFlat,
  };
}

/**
 * Where a step's time goes: forward (loss only), backward (variableGrads minus forward), the optimizer
 * (AdamW apply), and the rest of Trainer.trainStep (global-norm clipping, batch creation, reading the loss).
 * Medians over `reps` repetitions, each on the trainer's own model and optimizer.
 */
async function phaseSplit(trainer: Trainer<LmBatch>, reps: number): Promise<Record<string, number>> {
  const model = trainer.model;
  const vars = [...model.trainableParams().values()];
  const paths = [...model.trainableParams().keys()];
  const t = { step: [] as number[], forward: [] as number[], forwardBackward: [] as number[], optimizer: [] as number[] };
  const data = new TokenWindows(syntheticTokens(model.config.vocabSize), SEQ, BATCH, 11);
  for (let r = 0; r < reps; r++) {
    const batch = data.next();
    const ctx = { training: true, seed: r };
    let t0 = performance.now();
    const loss = tf.tidy(() => causalLmObjective.loss(model, batch, ctx));
    await loss.data();
    t.forward.push(performance.now() - t0);
    loss.dispose();
    t0 = performance.now();
    const { value, grads } = tf.variableGrads(() => causalLmObjective.loss(model, batch, ctx), vars);
    await value.data();
    t.forwardBackward.push(performance.now() - t0);
    causalLmObjective.dispose(batch);
    value.dispose();
    // The gradients' names are the variables' names; AdamW wants them by parameter path.
    const byPath = new Map(paths.map((p, i) => [p, grads[vars[i].name]]));
    t0 = performance.now();
    trainer.optimizer.apply(byPath, LR);
    await vars[0].data();
    t.optimizer.push(performance.now() - t0);
    tf.dispose(Object.values(grads));
    t0 = performance.now();
    await trainer.trainStep();
    t.step.push(performance.now() - t0);
  }
  const stepMs = median(t.step);
  const forwardMs = median(t.forward);
  const fb = median(t.forwardBackward);
  const optimizerMs = median(t.optimizer);
  return {
    stepMs: round(stepMs), forwardMs: round(forwardMs), backwardMs: round(fb - forwardMs), optimizerMs: round(optimizerMs),
    otherMs: round(stepMs - fb - optimizerMs),
  };
}

interface KernelRow {
  kernel: string;
  ms: number;
  share: number;
  calls: number;
}

/**
 * One Trainer.trainStep under tf.profile: kernel times summed by kernel name, and the top individual
 * (kernel, input shapes) groups. Profiling adds a little per-kernel overhead, so `wallMs` is above stepMs.
 */
async function profileStep(trainer: Trainer<LmBatch>, top: number): Promise<Record<string, unknown>> {
  const t0 = performance.now();
  const info = await tf.profile(async () => {
    await trainer.trainStep();
  });
  const wallMs = performance.now() - t0;
  const byName = new Map<string, { ms: number; calls: number }>();
  const byShape = new Map<string, { ms: number; calls: number }>();
  let total = 0;
  for (const k of info.kernels) {
    const ms = Number(k.kernelTimeMs);
    total += ms;
    const add = (map: Map<string, { ms: number; calls: number }>, key: string) => {
      const e = map.get(key) ?? { ms: 0, calls: 0 };
      e.ms += ms;
      e.calls++;
      map.set(key, e);
    };
    add(byName, k.name);
    add(byShape, `${k.name} ${k.inputShapes.map((s) => `[${s ?? ''}]`).join('x')}`);
  }
  const rows = (map: Map<string, { ms: number; calls: number }>): KernelRow[] =>
    [...map].sort((a, b) => b[1].ms - a[1].ms).slice(0, top)
      .map(([kernel, e]) => ({ kernel, ms: round(e.ms), share: round(e.ms / total, 3), calls: e.calls }));
  return {
    wallMs: round(wallMs),
    /** Most bytes held by tensors at any kernel of the step (tfjs's accounting, not the heap). */
    peakTensorMiB: mib(info.peakBytes),
    kernelMs: round(total),
    kernelCalls: info.kernels.length,
    byKernel: rows(byName),
    byKernelAndShape: rows(byShape),
  };
}

interface GenFigures {
  promptTokens: number;
  newTokens: number;
  tokensPerSec: number;
  ms: number;
}

/** Greedy generate() from an 8-token prompt up to the context length (no sliding window), batch 1. */
function timeGeneration(model: CausalLM, useCache: boolean): GenFigures {
  const prompt = Array.from(syntheticTokens(model.config.vocabSize).subarray(0, 8));
  const maxNewTokens = model.config.contextLength - prompt.length;
  generate(model, prompt, { maxNewTokens, useCache }); // warm-up: every sequence length once
  const t0 = performance.now();
  const out = generate(model, prompt, { maxNewTokens, useCache });
  const ms = performance.now() - t0;
  return { promptTokens: prompt.length, newTokens: out.length, tokensPerSec: round((out.length * 1000) / ms), ms: round(ms) };
}

async function runCase(c: BenchCase, o: Options): Promise<Record<string, unknown>> {
  const baseline = tf.memory();
  const model = CausalLM.create(c.model, { seed: 1 });
  const params = model.paramCount();
  const trainFlopsPerToken = 3 * model.flopsPerToken(SEQ);
  const trainer = makeTrainer(model);
  log(`${c.name}: ${params} parameters, training…`);
  const train = await timeTraining(trainer, c);
  log(`${c.name}: ${train.tokensPerSec} tokens/s (${train.timedSteps} steps of ${train.stepMs} ms)`);
  let phases: Record<string, number> | undefined;
  let profile: Record<string, unknown> | undefined;
  if (o.profile) {
    log(`${c.name}: phase split and kernel profile…`);
    phases = await phaseSplit(trainer, c.size === 'reference' ? 5 : 3);
    profile = await profileStep(trainer, c.size === 'reference' ? 12 : 8);
  }
  log(`${c.name}: generation…`);
  const generation = { withCache: timeGeneration(model, true), withoutCache: timeGeneration(model, false) };
  const wasmHeap = wasmHeapMiB();
  const memory = {
    peakRssMiB: peakRssMiB(),
    rssMiB: mib(process.memoryUsage().rss),
    tensorMiB: mib(tf.memory().numBytes),
    ...(wasmHeap !== undefined ? { wasmHeapMiB: wasmHeap } : {}),
  };
  trainer.dispose();
  model.dispose();
  const left = { tensors: tf.memory().numTensors - baseline.numTensors, MiB: mib(tf.memory().numBytes - baseline.numBytes) };
  const cfg = model.config;
  return {
    name: c.name,
    size: c.size,
    config: {
      family: cfg.family, vocabSize: cfg.vocabSize, contextLength: cfg.contextLength, dModel: cfg.dModel, nLayers: cfg.nLayers,
      nHeads: cfg.nHeads, nKvHeads: cfg.nKvHeads, dFf: cfg.dFf, tieEmbeddings: cfg.tieEmbeddings, batch: BATCH, seq: SEQ,
    },
    params,
    trainFlopsPerToken,
    train: { ...train, gflops: round((train.tokensPerSec * trainFlopsPerToken) / 1e9, 2) },
    ...(phases ? { phases } : {}),
    ...(profile ? { profile } : {}),
    generation,
    memory,
    /** What trainer.dispose() + model.dispose() did not free (should be 0 tensors). */
    leftAfterDispose: left,
  };
}

/**
 * Runs bench/torch_bench.py on the same configs with `threads` cores. OpenBLAS (the matmuls) gets them all
 * and ATen's OpenMP pool (the other ops) one: with both pools at 2 on 2 cores the reference step measured
 * 2.3-3x slower than with 1 thread, most likely the two spinning pools competing for the same cores.
 */
function runTorch(list: BenchCase[], threads: number): { ok: true; out: Record<string, unknown> } | { ok: false; note: string } {
  const python = process.env.TUNELAB_BENCH_PYTHON ?? '/usr/bin/python3';
  const configs = list.map((c) => ({ name: c.name, ...c.model, budgetS: c.torchBudgetS, warmup: c.warmup, minSteps: c.minSteps }));
  const script = path.join(__dirname, 'torch_bench.py');
  const env = { ...process.env, OPENBLAS_NUM_THREADS: String(threads), OMP_NUM_THREADS: '1', MKL_NUM_THREADS: String(threads) };
  const r = spawnSync(python, [script, '--threads', '1', '--batch', String(BATCH), '--seq', String(SEQ), '--lr', String(LR), '--configs', JSON.stringify(configs)], {
    env, encoding: 'utf8', timeout: 15 * 60_000, maxBuffer: 16 * 2 ** 20,
  });
  if (r.error) return { ok: false, note: `${python} could not run: ${r.error.message}` };
  const last = (r.stdout ?? '').trim().split('\n').at(-1) ?? '';
  let parsed: Record<string, unknown> | undefined;
  try {
    parsed = JSON.parse(last) as Record<string, unknown>;
  } catch {
    parsed = undefined;
  }
  if (parsed && parsed.available === false) return { ok: false, note: String(parsed.note) };
  if (r.status !== 0 || !parsed) {
    const err = (r.stderr ?? '').trim().split('\n').slice(-3).join(' | ');
    return { ok: false, note: `torch_bench.py exited with ${r.status ?? r.signal}: ${err || last}` };
  }
  return { ok: true, out: parsed };
}

async function main(): Promise<void> {
  const o = parseArgs(process.argv.slice(2));
  const engine = await initEngine(o.backend ? { backend: o.backend } : {});
  log(`backend ${engine.backend} (tfjs ${engine.tfjsVersion}, ${engine.threads} thread(s))`);
  const list = cases(o.quick);
  const cores = os.cpus().length;
  const started = Date.now();
  const loadBefore = os.loadavg();
  const results: Record<string, unknown>[] = [];
  for (const c of list) results.push(await runCase(c, o));

  let torch: Record<string, unknown> = { skipped: true, note: 'disabled with --no-torch' };
  if (o.torch) {
    const threadCounts = cores > 1 ? [1, cores] : [1];
    const runs: Record<string, unknown>[] = [];
    let note: string | undefined;
    for (const t of threadCounts) {
      log(`PyTorch, ${t} thread(s)…`);
      const r = runTorch(list, t);
      if (!r.ok) {
        note = r.note;
        break;
      }
      runs.push({ ...r.out, threads: t });
    }
    if (runs.length === 0) {
      torch = { skipped: true, note: `PyTorch comparison skipped: ${note}` };
      log(torch.note as string);
    } else {
      torch = { skipped: false, torch: runs[0].torch, runs, ...(note ? { note } : {}) };
      // Ratios tfjs / PyTorch of train tokens/s at the median step time (robust to other load on the
      // machine), per config and thread count; `ratioMean` uses total tokens / total time instead.
      type TorchRow = { name: string; tokensPerSec: number; medianTokensPerSec: number };
      for (const res of results) {
        const mine = res.train as TrainFigures;
        const ratio: Record<string, number> = {};
        const ratioMean: Record<string, number> = {};
        const torchTps: Record<string, number> = {};
        for (const run of runs) {
          const match = (run.results as TorchRow[]).find((x) => x.name === res.name);
          if (!match) continue;
          const key = `threads${String(run.threads)}`;
          torchTps[key] = match.medianTokensPerSec;
          ratio[key] = round(mine.medianTokensPerSec / match.medianTokensPerSec, 3);
          ratioMean[key] = round(mine.tokensPerSec / match.tokensPerSec, 3);
        }
        res.vsTorch = {
          torchMedianTokensPerSec: torchTps,
          ratio,
          ratioMean,
          bar: BAR,
          meetsBar: ratio.threads1 !== undefined ? ratio.threads1 >= BAR : undefined,
        };
      }
    }
  }

  const out = {
    bench: 'tunelab train/generate throughput',
    date: new Date().toISOString(),
    command: `tsx bench/bench.ts ${process.argv.slice(2).join(' ')}`.trim(),
    machine: machineRecord(loadBefore, log),
    engine,
    settings: { batch: BATCH, seq: SEQ, lr: LR, optimizer: 'AdamW (0.9, 0.999, eps 1e-8, no decay), clip 1.0', dtype: 'float32', data: 'synthetic uniform token ids' },
    results,
    torch,
    peakRssMiB: peakRssMiB(),
    wallSec: round((Date.now() - started) / 1000),
  };
  process.stdout.write(`${JSON.stringify(out, null, 2)}\n`);
}

main().catch((e) => {
  console.error(e instanceof UsageError ? `bench: ${e.message}` : e);
  process.exit(1);
});
