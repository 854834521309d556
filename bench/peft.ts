/**
 * tunelab's PEFT benchmark: what each fine-tuning strategy costs on the shipped base `tiny-llama` (Llama,
 * 1.05M parameters, context 128) with the real Trainer.trainStep() on the shipped domain text.
 *
 * Strategies: full fine-tuning, frozen subset (last block + head + final norm, `freezeAllBut`), LoRA r=8 on
 * q,v (PEFT's default) and on every linear layer, IA3 (defaults), bottleneck adapters (defaults), prefix
 * tuning (20 virtual tokens), prompt tuning (20), and a mixture of LoRA experts (4 experts, r=8, q/v, with
 * its router balance penalty) when src/peft/moe.ts exports addLoraMoe.
 *
 * For each: trainable parameters (exact) and % of the base, train tokens/s (median step after warm-up),
 * peak tensor bytes of one step (`profileMemory`), whether the tensor count stays flat across timed steps,
 * tensors left after dispose, adapter size on disk (saveAdapter; saveModel's folder for full/frozen) and
 * greedy generation tokens/s with the KV cache (8-token prompt, 64 new tokens) with the adapter active,
 * and for LoRA also after mergeLora. A fresh model is loaded for every strategy and disposed after.
 *
 * Run: `npm run -s bench:peft` (= `npx tsx bench/peft.ts`; about 3.5 minutes on 2 vCPUs). Options:
 *   --quick                 shorter timings (about 1 minute)
 *   --backend cpu|wasm|...  force a backend (default: initEngine's auto-detection; `TUNELAB_BACKEND` works too)
 *   --only a,b              run only these strategies (names as in the JSON, e.g. full,lora-qv)
 *
 * Prints one JSON object on stdout; progress goes to stderr. See BENCHMARKS.md ("PEFT methods").
 */
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import * as tf from '@tensorflow/tfjs';
import { initEngine } from '../src/engine';
import { logger, machineRecord, median, peakRssMiB, round, timeSteps } from './common';
import type { BackendName } from '../src/engine';
import { generate } from '../src/model';
import type { CausalLM } from '../src/model';
import { saveModel } from '../src/io/checkpoint';
import { base } from '../src/lab/base';
import { dataset } from '../src/lab/data';
import { Trainer } from '../src/train/trainer';
import type { TrainerOptions } from '../src/train/trainer';
import { freezeAllBut } from '../src/train/freeze';
import { LmBatch, TokenWindows, causalLmObjective, tokenStream } from '../src/train/causal-lm';
import * as peftLib from '../src/peft';
import { Adapter, adapterSize, peft } from '../src/peft/peft';
import { addLora, mergeLora } from '../src/peft/lora';
import { addIa3 } from '../src/peft/ia3';
import { addBottleneck } from '../src/peft/bottleneck';
import { addPrefixTuning } from '../src/peft/prefix';
import { addPromptTuning } from '../src/peft/prompt';
import { saveAdapter } from '../src/peft/io';

const BASE = 'tiny-llama';
const BATCH = 8;
const LR = 1e-3;
const PROMPT_TOKENS = 8;
const NEW_TOKENS = 64;

/** A penalty as the Trainer takes it (e.g. the LoRA mixture's router balance term). */
type Penalty = NonNullable<TrainerOptions<LmBatch>['penalty']>;

interface Strategy {
  name: string;
  description: string;
  /** Sets the model up for training; returns the adapter (undefined: base parameters train). */
  setup(model: CausalLM): { adapter?: Adapter; penalty?: Penalty };
  /** LoRA: also time generation after mergeLora. */
  merge?: boolean;
}

// addLoraMoe lives in src/peft/moe.ts, which may be absent or renamed in a given checkout: look it up at
// run time so this file typechecks either way.
type AddLoraMoe = (model: CausalLM, config: Record<string, unknown>, name?: string) => Adapter;
type MoePenalty = (model: CausalLM, name?: string, coef?: number) => Penalty;
const lib = peftLib as unknown as { addLoraMoe?: AddLoraMoe; loraMoeBalancePenalty?: MoePenalty };

function strategies(): Strategy[] {
  const list: Strategy[] = [
    { name: 'full', description: 'full fine-tuning (every base parameter)', setup: () => ({}) },
    {
      name: 'frozen-last1', description: 'frozen subset: last block + head (tied embeddings) + final norm (freezeAllBut defaults)',
      setup: (m) => {
        freezeAllBut(m, { lastLayers: 1, includeHead: true });
        return {};
      },
    },
    { name: 'lora-qv', description: 'LoRA r=8, alpha 8, q_proj + v_proj (PEFT default)', setup: (m) => ({ adapter: addLora(m, { r: 8 }) }), merge: true },
    {
      name: 'lora-all', description: 'LoRA r=8, alpha 8, all-linear (q/k/v/o, gate/up/down)',
      setup: (m) => ({ adapter: addLora(m, { r: 8, targetModules: 'all-linear' }) }), merge: true,
    },
    { name: 'ia3', description: 'IA3 (defaults: k_proj, v_proj, down_proj)', setup: (m) => ({ adapter: addIa3(m) }) },
    { name: 'bottleneck', description: 'bottleneck adapters (defaults: reduction 16, silu, after attention and MLP)', setup: (m) => ({ adapter: addBottleneck(m) }) },
    { name: 'prefix', description: 'prefix tuning, 20 virtual tokens (no projection)', setup: (m) => ({ adapter: addPrefixTuning(m, { numVirtualTokens: 20 }) }) },
    { name: 'prompt', description: 'prompt tuning, 20 virtual tokens', setup: (m) => ({ adapter: addPromptTuning(m, { numVirtualTokens: 20 }) }) },
  ];
  if (typeof lib.addLoraMoe === 'function') {
    const add = lib.addLoraMoe;
    const pen = lib.loraMoeBalancePenalty;
    list.push({
      name: 'lora-moe', description: 'mixture of LoRA experts: 4 experts r=8 on q_proj + v_proj, token routing, with the router balance penalty (coef 0.01)',
      setup: (m) => {
        const adapter = add(m, { experts: 4, r: 8 });
        return { adapter, ...(typeof pen === 'function' ? { penalty: pen(m) } : {}) };
      },
    });
  }
  return list;
}

interface Options {
  quick: boolean;
  backend?: BackendName;
  only?: string[];
}

class UsageError extends Error {}

function parseArgs(argv: string[]): Options {
  const o: Options = { quick: false };
  const value = (a: string, i: number): [string | undefined, number] => (a.includes('=') ? [a.slice(a.indexOf('=') + 1), i] : [argv[i + 1], i + 1]);
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--quick') o.quick = true;
    else if (a === '--backend' || a.startsWith('--backend=')) {
      const [v, j] = value(a, i);
      i = j;
      const allowed = ['cpu', 'wasm', 'tensorflow', 'tensorflow-gpu'];
      if (!v || !allowed.includes(v)) throw new UsageError(`--backend must be one of ${allowed.join(', ')} (got ${v ?? 'nothing'})`);
      o.backend = v as BackendName;
    } else if (a === '--only' || a.startsWith('--only=')) {
      const [v, j] = value(a, i);
      i = j;
      if (!v) throw new UsageError('--only needs a comma-separated list of strategy names');
      o.only = v.split(',').map((s) => s.trim()).filter(Boolean);
    } else if (a === '--help' || a === '-h') {
      process.stderr.write('usage: tsx bench/peft.ts [--quick] [--backend cpu|wasm|tensorflow|tensorflow-gpu] [--only name,name]\n');
      process.exit(0);
    } else throw new UsageError(`unknown option ${a} (try --help)`);
  }
  return o;
}

const log = logger('bench:peft');
const mib = (bytes: number) => round(bytes / 2 ** 20, 2);

function wasmHeapMiB(): number | undefined {
  const b = tf.backend() as unknown as { wasm?: { HEAPU8?: Uint8Array } };
  return b.wasm?.HEAPU8 ? mib(b.wasm.HEAPU8.byteLength) : undefined;
}

/** Total size of the files under `dir` (recursively), and their names. */
function folderBytes(dir: string): { bytes: number; files: Record<string, number> } {
  const files: Record<string, number> = {};
  let bytes = 0;
  const walk = (d: string) => {
    for (const e of fs.readdirSync(d, { withFileTypes: true })) {
      const p = path.join(d, e.name);
      if (e.isDirectory()) walk(p);
      else {
        const n = fs.statSync(p).size;
        files[path.relative(dir, p)] = n;
        bytes += n;
      }
    }
  };
  walk(dir);
  return { bytes, files };
}

interface Timing {
  warmupSteps: number;
  minSteps: number;
  budgetMs: number;
  /** Timed repetitions of the forward pass alone and of each generation (medians). */
  reps: number;
}

interface GenFigures {
  promptTokens: number;
  newTokens: number;
  tokensPerSec: number;
  ms: number;
}

/** Greedy generate() with the KV cache, batch 1: median of `reps` timed runs after one untimed identical run. */
function timeGeneration(model: CausalLM, prompt: number[], reps: number): GenFigures {
  const opts = { maxNewTokens: NEW_TOKENS, useCache: true, doSample: false };
  generate(model, prompt, opts);
  const times: number[] = [];
  let n = 0;
  for (let i = 0; i < reps; i++) {
    const t0 = performance.now();
    n = generate(model, prompt, opts).length;
    times.push(performance.now() - t0);
  }
  const ms = median(times);
  return { promptTokens: prompt.length, newTokens: n, tokensPerSec: round((n * 1000) / ms), ms: round(ms) };
}

/** Median wall time of the training-mode forward pass and loss alone (no tape), on fresh batches. */
async function timeForward(model: CausalLM, data: TokenWindows, reps: number): Promise<number> {
  const times: number[] = [];
  for (let i = 0; i < reps; i++) {
    const batch = data.next();
    const t0 = performance.now();
    const loss = tf.tidy(() => causalLmObjective.loss(model, batch, { training: true, seed: i }));
    await loss.data();
    times.push(performance.now() - t0);
    loss.dispose();
    causalLmObjective.dispose(batch);
  }
  return round(median(times));
}

async function runStrategy(s: Strategy, ids: Int32Array, prompt: number[], timing: Timing, tmpRoot: string): Promise<Record<string, unknown>> {
  const baseline = tf.memory();
  const { model, tokenizer } = await base(BASE);
  const baseParams = model.paramCount();
  const { adapter, penalty } = s.setup(model);
  const trainable = model.paramCount(true);
  if (adapter) {
    // adapterSize counts the adapter's weights; with nothing else unfrozen it must equal the trainable count.
    const size = adapterSize(model, adapter);
    if (size.trainable !== trainable) log(`${s.name}: adapterSize ${size.trainable} ≠ trainable ${trainable}`);
  }
  const reserved = model.reservedPositions();
  const seq = model.config.contextLength - reserved;
  const data = new TokenWindows(ids, seq, BATCH, 7);
  // Constant lr, so every step does the same work; the first step runs under tf.profile (profileMemory).
  const trainer = new Trainer(model, causalLmObjective, data, {
    lr: LR, maxSteps: 1, schedule: 'constant', weightDecay: 0, profileMemory: true,
  }, penalty ? { penalty } : {});
  const residentBefore = tf.memory().numBytes;
  log(`${s.name}: ${trainable} trainable of ${baseParams} (${round((100 * trainable) / baseParams, 2)}%), seq ${seq}; training…`);
  const first = await trainer.train();
  const peakBytes = first.history[0].peakBytes ?? NaN;
  const firstLoss = first.history[0].loss;

  for (let i = 1; i < timing.warmupSteps; i++) await trainer.trainStep();
  const { times, tokens, lastLoss, elapsedMs: elapsed, tensorsBefore, tensorsAfter, tensorsFlat } = await timeSteps(() => trainer.trainStep(), timing);
  const stepTokens = BATCH * seq;
  const train = {
    batch: BATCH, seq, tokensPerStep: stepTokens,
    warmupSteps: timing.warmupSteps, timedSteps: times.length, timedSec: round(elapsed / 1000, 2),
    medianStepMs: round(median(times)), medianTokensPerSec: round((stepTokens * 1000) / median(times)),
    meanTokensPerSec: round((tokens * 1000) / elapsed),
    minStepMs: round(Math.min(...times)), maxStepMs: round(Math.max(...times)),
    firstLoss: round(firstLoss, 4), lastLoss: round(lastLoss, 4),
    tensorsBefore, tensorsAfter, tensorsFlat,
  };
  log(`${s.name}: ${train.medianTokensPerSec} tokens/s (median of ${times.length} steps, ${train.medianStepMs} ms), loss ${train.firstLoss} → ${train.lastLoss}`);
  penalty?.dispose();
  trainer.dispose();
  // Forward + loss alone (no gradient tape, no penalty), same batch shape: the rest of a step is backward,
  // clipping and the update.
  const forwardMs = await timeForward(model, new TokenWindows(ids, seq, BATCH, 11), 3);

  const memory = {
    /** Most bytes held by tensors during the first step (tf.profile, tfjs's accounting). */
    peakStepMiB: mib(peakBytes),
    /** Bytes held before that step: weights, adapter, AdamW moments, rope tables. */
    residentMiB: mib(residentBefore),
    /** Peak minus resident: activations kept for backward, gradients, temporaries. */
    stepExtraMiB: mib(peakBytes - residentBefore),
    ...(wasmHeapMiB() !== undefined ? { wasmHeapMiB: wasmHeapMiB() } : {}),
  };

  // On disk: the adapter alone (PEFT layout), or the whole model folder for full / frozen fine-tuning.
  const dir = fs.mkdtempSync(path.join(tmpRoot, `${s.name}-`));
  const out = path.join(dir, 'out');
  if (adapter) await saveAdapter(model, out, 'default', { baseModelNameOrPath: `models/${BASE}` });
  else await saveModel(out, model);
  const disk = folderBytes(out);
  fs.rmSync(dir, { recursive: true, force: true });

  log(`${s.name}: generation…`);
  const generation: Record<string, GenFigures> = { active: timeGeneration(model, prompt, timing.reps) };
  if (s.merge) {
    mergeLora(model);
    generation.merged = timeGeneration(model, prompt, timing.reps);
  }
  // The same model with every adapter off (merged LoRA stays folded in): the base's cost on this run.
  if (adapter) generation.adaptersOff = await peft(model).withDisabled(() => timeGeneration(model, prompt, timing.reps));

  peft(model).clear();
  model.dispose();
  void tokenizer;
  const after = tf.memory();
  return {
    name: s.name,
    description: s.description,
    params: { trainable, base: baseParams, percentOfBase: round((100 * trainable) / baseParams, 3) },
    train: { ...train, forwardMs },
    memory,
    disk: { bytes: disk.bytes, KiB: round(disk.bytes / 1024), files: disk.files, what: adapter ? 'saveAdapter folder' : 'saveModel folder (no tokenizer)' },
    generation,
    leftAfterDispose: { tensors: after.numTensors - baseline.numTensors, MiB: mib(after.numBytes - baseline.numBytes) },
  };
}

async function main(): Promise<void> {
  const o = parseArgs(process.argv.slice(2));
  const loadBefore = os.loadavg();
  const started = Date.now();
  const engine = await initEngine(o.backend ? { backend: o.backend } : {});
  log(`backend ${engine.backend} (tfjs ${engine.tfjsVersion}, ${engine.threads} thread(s)); load average ${loadBefore.map((x) => round(x, 2)).join(' ')}`);
  let list = strategies();
  if (o.only) {
    const unknown = o.only.filter((n) => !list.some((s) => s.name === n));
    if (unknown.length) throw new UsageError(`unknown strategy ${unknown.join(', ')} (known: ${list.map((s) => s.name).join(', ')})`);
    list = list.filter((s) => o.only!.includes(s.name));
  }
  const timing: Timing = o.quick ? { warmupSteps: 2, minSteps: 3, budgetMs: 2500, reps: 1 } : { warmupSteps: 3, minSteps: 8, budgetMs: 15000, reps: 3 };

  log('tokenising the domain text…');
  const t0 = performance.now();
  const { model: probe, tokenizer } = await base(BASE);
  const baseConfig = probe.config;
  probe.dispose();
  const docs = dataset('domain');
  const ids = Int32Array.from(tokenStream(tokenizer, docs));
  const tokeniseSec = round((performance.now() - t0) / 1000, 2);
  // Prompt: the first 8 tokens of the held-out domain text.
  const prompt = tokenizer.encode(dataset('domain', 'heldout')[0], { addEos: false, parseSpecial: false }).slice(0, PROMPT_TOKENS);
  log(`${docs.length} documents, ${ids.length} tokens (${tokeniseSec} s)`);

  const tmpRoot = fs.mkdtempSync(path.join(os.tmpdir(), 'tunelab-bench-peft-'));
  const results: Record<string, unknown>[] = [];
  try {
    for (const s of list) results.push(await runStrategy(s, ids, prompt, timing, tmpRoot));
  } finally {
    fs.rmSync(tmpRoot, { recursive: true, force: true });
  }

  const out = {
    bench: 'tunelab PEFT methods: train step, memory, disk and generation per strategy',
    date: new Date().toISOString(),
    command: `tsx bench/peft.ts ${process.argv.slice(2).join(' ')}`.trim(),
    machine: machineRecord(loadBefore, log),
    engine,
    settings: {
      base: BASE, family: baseConfig.family, contextLength: baseConfig.contextLength, vocabSize: baseConfig.vocabSize, dModel: baseConfig.dModel, nLayers: baseConfig.nLayers,
      batch: BATCH, seq: 'contextLength − model.reservedPositions()', lr: LR, schedule: 'constant',
      optimizer: 'AdamW (0.9, 0.999, eps 1e-8, no weight decay), global-norm clip 1.0', dtype: 'float32',
      data: `dataset('domain') train split, ${docs.length} documents, ${ids.length} tokens (tokenStream with the base tokenizer), TokenWindows seed 7`,
      timing: { ...timing, note: 'step 1 runs under tf.profile (peak memory) and counts as warm-up; then timed steps until both minSteps and budgetMs are reached; tokens/s uses the median step' },
      generation: `greedy, KV cache, batch 1, ${PROMPT_TOKENS}-token prompt (held-out domain text), ${NEW_TOKENS} new tokens; median of ${timing.reps} run(s) after one untimed identical run`,
    },
    results,
    peakRssMiB: peakRssMiB(),
    wallSec: round((Date.now() - started) / 1000),
  };
  process.stdout.write(`${JSON.stringify(out, null, 2)}\n`);
}

main().catch((e) => {
  console.error(e instanceof UsageError ? `bench:peft: ${e.message}` : e);
  process.exit(1);
});
