/**
 * Gradient checkpointing's memory-vs-time trade on the shipped base (issue 21): peak tensor bytes of one
 * training step (tf.profile) and the median step time, with `TrainConfig.gradientCheckpointing` off and
 * on, at two sequence lengths, for full fine-tuning and for LoRA. The two runs' losses are
 * compared step by step too (checkpointing must not change them).
 *
 * Usage: npx tsx bench/checkpoint.ts [--base tiny-llama] [--batch 8] [--seq 64,128] [--steps 5] > bench/checkpoint-results.json
 */
import * as tf from '@tensorflow/tfjs';
import { initEngine } from '../src/engine';
import { argValue, logger, machineRecord, median, round } from './common';
import { base } from '../src/lab/base';
import { dataset } from '../src/lab/data';
import { Trainer } from '../src/train/trainer';
import { LmBatch, TokenWindows, causalLmObjective, tokenStream } from '../src/train/causal-lm';
import type { CausalLM } from '../src/model';
import { addLora } from '../src/peft/lora';

const log = logger('checkpoint');

async function main(): Promise<void> {
  const loadBefore = (await import('os')).loadavg();
  const backend = (await initEngine()).backend;
  const baseName = argValue('base', 'tiny-llama');
  const batch = Number(argValue('batch', '8'));
  const seqLens = argValue('seq', '64,128').split(',').map(Number);
  const minSteps = Number(argValue('steps', '5'));
  const rows: Record<string, unknown>[] = [];
  for (const method of ['full', 'lora'] as const) {
    for (const seqLen of seqLens) {
      // Both runs side by side, their steps alternated, so a change in machine load hits both alike.
      const runs: { gradientCheckpointing: boolean; model: CausalLM; trainer: Trainer<LmBatch>; times: number[]; losses: number[]; activation: number }[] = [];
      for (const gradientCheckpointing of [false, true]) {
        const { model, tokenizer } = await base(baseName);
        if (method === 'lora') addLora(model, { r: 8, alpha: 16 });
        const ids = Int32Array.from(tokenStream(tokenizer, dataset('domain')));
        const trainer = new Trainer(model, causalLmObjective, new TokenWindows(ids, seqLen, batch, 7), { lr: 1e-4, maxSteps: 1000, gradientCheckpointing });
        runs.push({ gradientCheckpointing, model, trainer, times: [] as number[], losses: [] as number[], activation: 0 });
      }
      for (const r of runs) {
        const before = tf.memory().numBytes;
        const info = await tf.profile(async () => { r.losses.push((await r.trainer.trainStep()).loss); });
        r.activation = info.peakBytes - before;
      }
      // Two untimed steps each first: the process's first shapes pay one-off kernel and heap set-up.
      const tensors = tf.memory().numTensors;
      for (let s = -2; s < minSteps; s++) {
        for (const r of s % 2 ? [...runs].reverse() : runs) {
          const t0 = performance.now();
          r.losses.push((await r.trainer.trainStep()).loss);
          if (s >= 0) r.times.push(performance.now() - t0);
        }
      }
      const tensorsFlat = tf.memory().numTensors === tensors;
      for (const r of runs) {
        const row = {
          method, seqLen, batch, gradientCheckpointing: r.gradientCheckpointing,
          // Peak tensor bytes above what was live before the step (weights and optimizer state of both runs).
          stepPeakMiB: round(r.activation / 2 ** 20, 2), medianStepMs: round(median(r.times)), tensorsFlat,
        };
        log(JSON.stringify(row));
        rows.push(row);
        r.model.dispose();
      }
      const firstLoss = [runs[0].losses[0], runs[1].losses[0]];
      const lossDiff = Math.max(...runs[0].losses.map((l, i) => Math.abs(l - runs[1].losses[i])));
      rows.push({ method, seqLen, firstLoss, maxLossDiff: lossDiff });
    }
  }
  console.log(JSON.stringify({ bench: 'gradient checkpointing', base: baseName, backend, date: new Date().toISOString(), machine: machineRecord(loadBefore, log), rows }, null, 2));
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
