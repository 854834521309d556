/**
 * QLoRA benchmark: the same LoRA run on the shipped base `tiny-llama` with its frozen base stored float32,
 * int8 (per-output-channel absmax) and NF4 (blocks of 64; also with the embedding table and double
 * quantization), see src/model/quant*.ts.
 *
 * Each variant: a fresh `base('tiny-llama')`, `quantizeBase` (not for float32), `addLora` (r 8, α 16, every
 * linear layer, seed 0), the real Trainer (AdamW, constant lr 2e-3 after 10 warm-up steps, batch 8 × 128,
 * seed 42) on `dataset('domain')`, then the held-out loss on `dataset('domain', 'heldout')`.
 * Reports weight memory (base as held: float32 variables plus quantized bytes; and the adapter), the peak
 * tensor bytes of the first step (`profileMemory`; tfjs's own accounting, so JavaScript-held quantized
 * bytes are not in it: they are in weight memory), median step tokens/s, tensor count across steps, and
 * held-out loss before and after. Then a speed phase fair under shared load: one fresh model and trainer
 * per variant, their steps interleaved round-robin (`--rounds` rounds after 2 untimed ones), median step
 * tokens/s per variant; and greedy generation (KV cache, 8-token prompt, 64 new tokens, median of 3),
 * also interleaved.
 *
 *   npx tsx bench/qlora.ts [--steps 150] [--heldout 32] [--rounds 12]
 *
 * One JSON object on stdout; progress on stderr. See BENCHMARKS.md ("QLoRA").
 */
import * as os from 'os';
import * as tf from '@tensorflow/tfjs';
import { initEngine } from '../src/engine';
import { argValue, logger, machineRecord, median, peakRssMiB, round } from './common';
import { base } from '../src/lab/base';
import { dataset } from '../src/lab/data';
import { Trainer } from '../src/train/trainer';
import { TokenWindows, causalLmObjective, tokenStream } from '../src/train/causal-lm';
import { heldOutLossSync } from '../src/eval/metrics';
import { addLora } from '../src/peft/lora';
import { generate } from '../src/model/generate';
import { quantizeBase, weightBytes, type QuantizeConfig } from '../src/model/quant-model';

const log = logger('bench:qlora');
const arg = (name: string, fallback: number) => Number(argValue(name, String(fallback)));
const STEPS = arg('steps', 150);
const HELDOUT = arg('heldout', 32);
const ROUNDS = arg('rounds', 12);
const SEQ = 128;
const BATCH = 8;

const variants: { name: string; quantize?: Partial<QuantizeConfig> }[] = [
  { name: 'float32' },
  { name: 'int8', quantize: { format: 'int8' } },
  { name: 'nf4', quantize: { format: 'nf4' } },
  { name: 'nf4 + embeddings', quantize: { format: 'nf4', embeddings: true } },
  { name: 'nf4 + embeddings + double quant', quantize: { format: 'nf4', embeddings: true, doubleQuant: true } },
];

async function main() {
  const loadBefore = os.loadavg();
  const engine = await initEngine();
  log(`engine ${engine.backend}; ${STEPS} steps, held-out ${HELDOUT} windows of ${SEQ}`);
  const results: Record<string, unknown>[] = [];
  let f32Base = 0;
  for (const v of variants) {
    const { model, tokenizer } = await base('tiny-llama');
    const train = tokenStream(tokenizer, dataset('domain'));
    const held = { tokens: tokenStream(tokenizer, dataset('domain', 'heldout')).slice(0, HELDOUT * SEQ + 1) };
    if (v.quantize) quantizeBase(model, v.quantize);
    const baseBytes = weightBytes(model).total;
    if (!v.quantize) f32Base = baseBytes;
    const before = heldOutLossSync(model, held, { seqLen: SEQ }).loss;
    addLora(model, { r: 8, alpha: 16, targetModules: 'all-linear' });
    const adapterBytes = [...model.adapterParams.values()].reduce((s, p) => s + 4 * p.variable.size, 0);
    const trainer = new Trainer(model, causalLmObjective, new TokenWindows(train, SEQ, BATCH, 42), {
      lr: 2e-3, maxSteps: STEPS, warmupSteps: 10, schedule: 'constant', seed: 42, profileMemory: true,
    });
    const stamps: number[] = [];
    const counts: number[] = [];
    trainer.on('step', () => { stamps.push(performance.now()); counts.push(tf.memory().numTensors); });
    const t0 = performance.now();
    const r = await trainer.train();
    const steps = stamps.map((s, i) => s - (i ? stamps[i - 1] : t0)).slice(3);
    const after = heldOutLossSync(model, held, { seqLen: SEQ }).loss;
    const row = {
      variant: v.name, quantize: v.quantize ?? null,
      baseWeightMiB: round(baseBytes / 2 ** 20, 3), baseVsFloat32: round(baseBytes / f32Base, 4), adapterMiB: round(adapterBytes / 2 ** 20, 3),
      peakStepMiB: round((r.history[0].peakBytes ?? NaN) / 2 ** 20, 2),
      tokensPerSec: round((BATCH * SEQ * 1000) / median(steps)), fastestStepTokensPerSec: round((BATCH * SEQ * 1000) / Math.min(...steps)),
      tensorsFlat: counts.slice(2).every((c) => c === counts[2]),
      heldOutBefore: round(before, 4), heldOutAfter: round(after, 4), finalTrainLoss: round(r.history.at(-1)!.loss, 4),
    };
    log(JSON.stringify(row));
    results.push(row);
    trainer.dispose();
    model.dispose();
  }
  // Speed, interleaved: every variant sees the same machine load.
  const setups = await Promise.all(variants.map(async (v) => {
    const { model, tokenizer } = await base('tiny-llama');
    if (v.quantize) quantizeBase(model, v.quantize);
    addLora(model, { r: 8, alpha: 16, targetModules: 'all-linear' });
    const trainer = new Trainer(model, causalLmObjective, new TokenWindows(tokenStream(tokenizer, dataset('domain')), SEQ, BATCH, 42), { lr: 2e-3, maxSteps: ROUNDS + 2, seed: 42 });
    return { model, trainer, prompt: tokenizer.encode(dataset('domain', 'heldout')[0]).slice(0, 8), times: [] as number[], gen: [] as number[] };
  }));
  for (let round = 0; round < ROUNDS + 2; round++) {
    for (const s of setups) {
      const t = performance.now();
      await s.trainer.trainStep();
      if (round >= 2) s.times.push(performance.now() - t);
    }
  }
  for (let round = 0; round < 4; round++) {
    for (const s of setups) {
      const t = performance.now();
      generate(s.model, s.prompt, { maxNewTokens: 64 });
      if (round >= 1) s.gen.push(performance.now() - t);
    }
  }
  setups.forEach((s, i) => {
    results[i].interleavedTokensPerSec = round((BATCH * SEQ * 1000) / median(s.times));
    results[i].interleavedFastestTokensPerSec = round((BATCH * SEQ * 1000) / Math.min(...s.times));
    results[i].generateTokensPerSec = round(64000 / median(s.gen));
    log(`${variants[i].name}: interleaved train ${results[i].interleavedTokensPerSec} tok/s, generate ${results[i].generateTokensPerSec} tok/s`);
    s.trainer.dispose();
    s.model.dispose();
  });
  const f32 = results[0].heldOutAfter as number;
  for (const r of results) r.heldOutVsFloat32 = round(((r.heldOutAfter as number) - f32) / f32 * 100, 3);
  const out = { bench: 'qlora', date: new Date().toISOString(), engine: engine.backend, steps: STEPS, heldoutWindows: HELDOUT, results, peakRssMiB: peakRssMiB(), machine: machineRecord(loadBefore, log) };
  process.stdout.write(`${JSON.stringify(out, null, 2)}\n`);
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
