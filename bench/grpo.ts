/**
 * tunelab's GRPO benchmark on the largest-digit verifiable task (`largestDigitTask`), shipped base `tiny-llama`:
 * for each seed, an SFT warm-up of 60 steps (lr 1e-3, batch 8) on the train questions, then GRPO (defaults:
 * β 0, group-scaled rewards, 'dapo' loss; β 0.04; 4 iterations per batch), Dr. GRPO (`scaleRewards: 'none'`, `lossType: 'dr_grpo'`)
 * and RLOO, each from the same warm-up weights (and PPO with the same completions per step, `--methods ppo`): 40 steps of 16 prompts × 8 completions, completions of ≤ 4 tokens.
 * Held-out exact match over all 180 held-out questions, greedy (`answerMetrics`) and sampled at temperature 1
 * (`policyRewardKl`, 2 samples each, with the KL to the warm-up model), before and after; time per step (median),
 * tfjs bytes GRPO holds (`memory()`), peak RSS, and tensor counts across steps.
 *
 * Run: `npx tsx bench/grpo.ts [--quick] [--seeds 0,1] [--methods grpo,rloo,ppo]`. Prints one JSON object on stdout; progress on stderr.
 * See BENCHMARKS.md ("GRPO and RLOO on the largest-digit task").
 */
import * as os from 'os';
import * as tf from '@tensorflow/tfjs';
import { initEngine } from '../src/engine';
import { logger, machineRecord, median, peakRssMiB, round } from './common';
import { base } from '../src/lab/base';
import { sft } from '../src/train/sft';
import { answerMetrics } from '../src/eval/metrics';
import { GrpoTrainer, grpoDefaults, type GrpoConfig } from '../src/rlhf/grpo';
import { rlooDefaults } from '../src/rlhf/rloo';
import { largestDigitTask } from '../src/rlhf/tasks';
import { policyRewardKl } from '../src/rlhf/frontier';
import { ppo } from '../src/rlhf/ppo';
import type { CausalLM } from '../src/model/transformer';

const args = process.argv.slice(2);
const quick = args.includes('--quick');
const seedsArg = args.indexOf('--seeds');
const seeds = seedsArg >= 0 ? args[seedsArg + 1].split(',').map(Number) : [0, 1];
const methodsArg = args.indexOf('--methods');
const only = methodsArg >= 0 ? args[methodsArg + 1].split(',') : null; // e.g. --methods ppo,rloo (substrings of the names)
const log = logger('grpo');
const STEPS = quick ? 3 : 40;
const common: Partial<GrpoConfig> = { maxSteps: STEPS, batchSize: 16, numGenerations: 8, maxCompletionLength: 4 };
const variants: { name: string; defaults: Readonly<GrpoConfig>; config: Partial<GrpoConfig> }[] = [
  { name: 'GRPO (defaults, β 0)', defaults: grpoDefaults, config: {} },
  { name: 'GRPO β 0.04', defaults: grpoDefaults, config: { beta: 0.04 } },
  { name: 'GRPO μ 4', defaults: grpoDefaults, config: { numIterations: 4 } },
  { name: 'Dr. GRPO', defaults: grpoDefaults, config: { scaleRewards: 'none', lossType: 'dr_grpo' } },
  { name: 'RLOO (k 8)', defaults: rlooDefaults, config: { numGenerations: 8 } },
];

(async () => {
  const loadBefore = os.loadavg();
  const engine = await initEngine();
  const task = largestDigitTask();
  const heldout = quick ? task.heldout.slice(0, 30) : task.heldout;
  const score = async (m: CausalLM, ref: CausalLM, tok: Awaited<ReturnType<typeof base>>['tokenizer'], seed: number) => {
    const greedy = answerMetrics(m, tok, heldout, { maxNewTokens: 4 }).exactMatch;
    const s = await policyRewardKl(m, ref, tok, heldout.map((q) => q.question), task.reward, { samplesPerPrompt: 2, responseLength: 4, temperature: 1, seed });
    return { greedy: round(greedy, 3), sampled: round(s.reward, 3), kl: round(s.kl, 3) };
  };
  const runs: Record<string, unknown>[] = [];
  for (const seed of seeds) {
    const { model: warm, tokenizer: tok } = await base('tiny-llama');
    await sft(warm, tok, task.sftRows('train'), { maxSteps: quick ? 10 : 60, lr: 1e-3, batchSize: 8, seed });
    const before = await score(warm, warm, tok, seed);
    log(`seed ${seed}: warm-up held-out exact match greedy ${before.greedy}, sampled ${before.sampled}`);
    for (const v of variants.filter((x) => !only || only.some((o) => x.name.toLowerCase().includes(o)))) {
      const policy = warm.clone();
      const trainer = new GrpoTrainer(policy, tok, task.prompts('train'), task.reward, { ...v.defaults, ...common, ...v.config, seed }, v.name.startsWith('RLOO') ? 'rloo' : 'grpo', v.defaults);
      const times: number[] = [];
      const tensors: number[] = [];
      let last = 0;
      trainer.on('step', (m) => {
        times.push(m.elapsedMs - last);
        last = m.elapsedMs;
        tensors.push(tf.memory().numTensors);
      });
      const result = await trainer.train();
      trainer.dispose();
      const after = await score(policy, warm, tok, seed);
      const record = {
        seed, method: v.name, before, after, msPerStep: round(median(times), 0), completionsPerStep: 16 * (v.config.numGenerations ?? v.defaults.numGenerations),
        memoryMiB: round(result.memory.totalBytes / 2 ** 20, 1), referenceMiB: round(result.memory.referenceBytes / 2 ** 20, 1),
        tensorsFlat: tensors.slice(1).every((t) => t === tensors[1]), trainReward: { first: round(result.history[0].reward, 3), last: round(result.history.at(-1)!.reward, 3) },
      };
      log(JSON.stringify(record));
      runs.push(record);
      policy.dispose();
    }
    if (!only || only.includes('ppo')) {
      // PPO with the same completions per step (one per prompt: 16 × 8 prompts), T 1 as above, its defaults otherwise.
      const policy = warm.clone();
      const t0 = Date.now();
      const result = await ppo(policy, tok, task.prompts('train'), task.reward, { maxSteps: STEPS, batchSize: 128, responseLength: 4, temperature: 1, seed });
      const after = await score(policy, warm, tok, seed);
      const record = { seed, method: 'PPO (defaults, 4 epochs)', before, after, msPerStep: round((Date.now() - t0) / STEPS, 0), completionsPerStep: 128,
        memoryMiB: round(result.memory.totalBytes / 2 ** 20, 1), referenceMiB: round(result.memory.referenceBytes / 2 ** 20, 1) };
      log(JSON.stringify(record));
      runs.push(record);
      policy.dispose();
    }
    warm.dispose();
  }
  console.log(JSON.stringify({ engine: engine.backend, machine: machineRecord(loadBefore, log), date: new Date().toISOString(), steps: STEPS, peakRssMiB: peakRssMiB(), runs }, null, 1));
})();
