/**
 * tunelab's RLHF frontier benchmark: reward against KL on the controlled-sentiment task (a small analogue
 * of the DPO paper's Fig. 2, arXiv 2305.18290 §6.1) on the shipped base `tiny-llama`, PPO against DPO.
 *
 * - PPO: `ppo()` with the lexicon reward `sentimentScore(response)` on training prompts, defaults of
 *   `ppoDefaults` (batch 16, 4 epochs, lr 1e-4 linear, klCoef 0.05, 16-token responses, T 0.7); its
 *   per-step (reward, KL) on its own rollouts, and checkpoints every `--every` steps evaluated below.
 * - DPO: preference pairs from the base's own samples (`sentimentPreferences`, 4 per prompt, best vs
 *   worst by lexicon score; two draws, seeds 0 and 1) on the same training prompts, then `dpo()` at several β, each from a fresh
 *   base with the same steps and data order, checkpoints every `--every` steps.
 * - Every checkpoint (and the base) is evaluated by `policyRewardKl` on held-out prompts against the
 *   untouched base: mean lexicon reward and mean sequence KL Σ_t log π − log π_ref over samples from the
 *   policy (same prompts, seeds and sampler settings for every point).
 *
 * Run: `npm run -s bench:frontier` (= `npx tsx bench/frontier.ts`). Options:
 *   --quick                 a few steps of each, small eval (smoke test, ~1 minute); writes no results file
 *   --ppo-steps N / --dpo-steps N / --every N   override the step counts and the checkpoint interval
 *   --backend cpu|wasm|...  force a backend (default: initEngine's auto-detection)
 *
 * Prints one JSON object on stdout; progress goes to stderr. A full run also writes
 * bench/frontier-results.json. See BENCHMARKS.md ("RLHF: reward vs KL on the controlled-sentiment task").
 */
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import * as tf from '@tensorflow/tfjs';
import { initEngine } from '../src/engine';
import { logger, machineRecord, peakRssMiB, round as roundTo } from './common';
import type { BackendName } from '../src/engine';
import type { CausalLM } from '../src/model';
import { base } from '../src/lab/base';
import type { Tokenizer } from '../src/tokenizer/tokenizer';
import { ppo, ppoDefaults } from '../src/rlhf/ppo';
import { dpo, dpoDefaults } from '../src/rlhf/dpo';
import { sentimentPreferences, sentimentPrompts, sentimentScore } from '../src/rlhf/sentiment';
import { policyRewardKl, type RewardKlOptions } from '../src/rlhf/frontier';

const BASE = 'tiny-llama';
const BETAS = [0.05, 0.1, 0.5, 1];
const RESPONSE_LENGTH = 16;
const TEMPERATURE = 0.7;
// Training prompts share one token length (12) and held-out ones another (13): the model has no padding
// mask, so sampling batches only prompts of equal length; one length = one batch per rollout.
const TRAIN_LEN = 12;
const EVAL_LEN = 13;

interface Options {
  quick: boolean;
  backend?: BackendName;
  ppoSteps?: number;
  dpoSteps?: number;
  every?: number;
}

class UsageError extends Error {}

function parseArgs(argv: string[]): Options {
  const o: Options = { quick: false };
  const value = (a: string, i: number): [string | undefined, number] => (a.includes('=') ? [a.slice(a.indexOf('=') + 1), i] : [argv[i + 1], i + 1]);
  const int = (name: string, v: string | undefined) => {
    const n = Number(v);
    if (!Number.isInteger(n) || n < 1) throw new UsageError(`${name} needs a positive integer (got ${v ?? 'nothing'})`);
    return n;
  };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const name = a.split('=')[0];
    if (a === '--quick') o.quick = true;
    else if (name === '--backend') {
      const [v, j] = value(a, i);
      i = j;
      const allowed = ['cpu', 'wasm', 'tensorflow', 'tensorflow-gpu'];
      if (!v || !allowed.includes(v)) throw new UsageError(`--backend must be one of ${allowed.join(', ')} (got ${v ?? 'nothing'})`);
      o.backend = v as BackendName;
    } else if (name === '--ppo-steps' || name === '--dpo-steps' || name === '--every') {
      const [v, j] = value(a, i);
      i = j;
      const n = int(name, v);
      if (name === '--ppo-steps') o.ppoSteps = n;
      else if (name === '--dpo-steps') o.dpoSteps = n;
      else o.every = n;
    } else if (a === '--help' || a === '-h') {
      process.stderr.write('usage: tsx bench/frontier.ts [--quick] [--ppo-steps N] [--dpo-steps N] [--every N] [--backend cpu|wasm|tensorflow|tensorflow-gpu]\n');
      process.exit(0);
    } else throw new UsageError(`unknown option ${a} (try --help)`);
  }
  return o;
}

const log = logger('bench:frontier');
const round = (x: number, digits = 3) => roundTo(x, digits);
const reward = (_prompt: string, response: string) => sentimentScore(response);

/** A frontier point as stored: reward and KL with their standard errors, and how long the evaluation took. */
interface Point {
  method: 'base' | 'ppo' | 'dpo';
  beta?: number;
  step: number;
  reward: number;
  rewardStderr: number;
  kl: number;
  klStderr: number;
  /** Seconds of training that produced this checkpoint (from the start of its run). */
  trainSec: number;
  evalSec: number;
  examples?: { prompt: string; response: string; reward: number; kl: number }[];
}

async function evaluate(
  policy: CausalLM, reference: CausalLM, tok: Tokenizer, prompts: string[], eo: Partial<RewardKlOptions>, at: Omit<Point, 'reward' | 'rewardStderr' | 'kl' | 'klStderr' | 'evalSec'>, examples = 0,
): Promise<Point> {
  const t0 = performance.now();
  const pt = await policyRewardKl(policy, reference, tok, prompts, reward, eo);
  const p: Point = {
    ...at, reward: round(pt.reward), rewardStderr: round(pt.rewardStderr), kl: round(pt.kl), klStderr: round(pt.klStderr),
    evalSec: round((performance.now() - t0) / 1000, 1),
  };
  // The first sample of the first few prompts: what the numbers look like as text.
  if (examples > 0) p.examples = pt.samples.filter((_, i) => i % eo.samplesPerPrompt! === 0).slice(0, examples).map((s) => ({ prompt: s.prompt, response: s.response, reward: round(s.reward), kl: round(s.kl) }));
  log(`${at.method}${at.beta !== undefined ? ` β ${at.beta}` : ''} step ${at.step}: reward ${p.reward} ± ${p.rewardStderr}, KL ${p.kl} ± ${p.klStderr} (eval ${p.evalSec} s)`);
  return p;
}

/** Clones of the model taken after the steps in `at` (cheap: 1M parameters), evaluated after training. */
function snapshotter(model: CausalLM, every: number, started: () => number) {
  const snaps: { step: number; model: CausalLM; trainSec: number }[] = [];
  return {
    snaps,
    onStep(step: number, last: boolean) {
      if (step % every === 0 || last) snaps.push({ step, model: model.clone(), trainSec: round((performance.now() - started()) / 1000, 1) });
    },
  };
}

async function main(): Promise<void> {
  const o = parseArgs(process.argv.slice(2));
  const loadBefore = os.loadavg();
  const started = Date.now();
  const engine = await initEngine(o.backend ? { backend: o.backend } : {});
  log(`backend ${engine.backend} (tfjs ${engine.tfjsVersion}, ${engine.threads} thread(s)); load average ${loadBefore.map((x) => round(x, 2)).join(' ')}`);
  const ppoSteps = o.ppoSteps ?? (o.quick ? 3 : 100);
  const dpoSteps = o.dpoSteps ?? (o.quick ? 3 : 60);
  const every = o.every ?? (o.quick ? 3 : 20);
  const evalPrompts = o.quick ? 8 : 64;
  const eo: Partial<RewardKlOptions> = { samplesPerPrompt: o.quick ? 2 : 4, responseLength: RESPONSE_LENGTH, temperature: TEMPERATURE, seed: 12345 };

  const { model: ref, tokenizer: tok } = await base(BASE);
  const pool = sentimentPrompts(1000, 0);
  const byLen = (n: number) => pool.filter((p) => tok.encode(p).length === n);
  const train = byLen(TRAIN_LEN);
  const held = byLen(EVAL_LEN).slice(0, evalPrompts);
  log(`${train.length} training prompts (${TRAIN_LEN} tokens), ${held.length} held-out prompts (${EVAL_LEN} tokens), ${eo.samplesPerPrompt} samples each`);

  const points: Point[] = [];
  points.push(await evaluate(ref, ref, tok, held, eo, { method: 'base', step: 0, trainSec: 0 }, 3));

  // PPO ---------------------------------------------------------------------------------------------
  const ppoConfig = { ...ppoDefaults, maxSteps: ppoSteps, responseLength: RESPONSE_LENGTH, temperature: TEMPERATURE, seed: 1 };
  const ppoPolicy = ref.clone();
  let t0 = performance.now();
  const ppoSnap = snapshotter(ppoPolicy, every, () => t0);
  const ppoResult = await ppo(ppoPolicy, tok, train, reward, ppoConfig, {
    onTrainer: (t) => t.on('step', (m) => {
      ppoSnap.onStep(m.step, m.step === ppoSteps);
      if (m.step % 5 === 0 || m.step === 1) log(`ppo step ${m.step}/${ppoSteps}: score ${round(m['objective/scores'])}, KL ${round(m['objective/kl'])}, ${round(m.elapsedMs / 1000, 1)} s`);
    }),
  });
  const ppoSec = round((performance.now() - t0) / 1000, 1);
  for (const s of ppoSnap.snaps) {
    points.push(await evaluate(s.model, ref, tok, held, eo, { method: 'ppo', step: s.step, trainSec: s.trainSec }, s.step === ppoSteps ? 3 : 0));
    s.model.dispose();
  }
  ppoPolicy.dispose();

  // DPO ---------------------------------------------------------------------------------------------
  t0 = performance.now();
  // Two independent draws of 4 samples per prompt (seeds 0 and 1): ~2 pairs per training prompt, so 60 DPO
  // steps of 8 pairs cover the data about three times rather than six.
  const prefs = [0, 1].flatMap((seed) => sentimentPreferences(ref, tok, train, { samplesPerPrompt: 4, maxNewTokens: RESPONSE_LENGTH, temperature: TEMPERATURE, seed }));
  const pairSec = round((performance.now() - t0) / 1000, 1);
  const rows = prefs.map(({ prompt, chosen, rejected }) => ({ prompt, chosen, rejected }));
  const meanOf = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / Math.max(1, xs.length);
  log(`${rows.length} preference pairs from ${train.length} prompts in ${pairSec} s (chosen ${round(meanOf(prefs.map((p) => p.chosenScore)))}, rejected ${round(meanOf(prefs.map((p) => p.rejectedScore)))})`);
  const dpoRuns: { beta: number; trainSec: number; finalLoss: number; finalMetrics: Record<string, number> }[] = [];
  for (const beta of BETAS) {
    const policy = ref.clone();
    t0 = performance.now();
    const snap = snapshotter(policy, every, () => t0);
    const r = await dpo(policy, tok, rows, { beta, maxSteps: dpoSteps, reference: 'copy', evalOnStart: false, seed: 42 }, {
      onTrainer: (t) => t.on('step', (m) => {
        snap.onStep(m.step, m.step === dpoSteps);
        if (m.step % 10 === 0) log(`dpo β ${beta} step ${m.step}/${dpoSteps}: loss ${round(m.loss)}`);
      }),
    });
    const trainSec = round((performance.now() - t0) / 1000, 1);
    const last = r.metrics.at(-1)!;
    dpoRuns.push({ beta, trainSec, finalLoss: round(last.loss), finalMetrics: Object.fromEntries(Object.entries(last).map(([k, v]) => [k, round(v)])) });
    for (const s of snap.snaps) {
      points.push(await evaluate(s.model, ref, tok, held, eo, { method: 'dpo', beta, step: s.step, trainSec: s.trainSec }, s.step === dpoSteps ? 3 : 0));
      s.model.dispose();
    }
    policy.dispose();
  }
  ref.dispose();

  const out = {
    bench: 'tunelab RLHF frontier: reward vs sequence KL on the controlled-sentiment task, PPO vs DPO',
    date: new Date().toISOString(),
    command: `tsx bench/frontier.ts ${process.argv.slice(2).join(' ')}`.trim(),
    quick: o.quick,
    machine: machineRecord(loadBefore, log),
    engine,
    settings: {
      base: BASE, reward: 'sentimentScore(response): AFINN-111 valence sum / 5',
      prompts: `sentimentPrompts(1000, 0) (general/heldout): ${train.length} of ${TRAIN_LEN} tokens for training, ${held.length} of ${EVAL_LEN} tokens held out for evaluation`,
      evaluation: { ...eo, reference: 'the untouched base', kl: 'mean over samples y ~ π of Σ_t log π(y_t) − log π_ref(y_t), logits / temperature' },
      ppo: { maxSteps: ppoSteps, batchSize: ppoConfig.batchSize, numPpoEpochs: ppoConfig.numPpoEpochs, lr: ppoConfig.lr, schedule: ppoConfig.schedule, klCoef: ppoConfig.klCoef, responseLength: RESPONSE_LENGTH, temperature: TEMPERATURE, seed: 1 },
      dpo: { maxSteps: dpoSteps, batchSize: dpoDefaults.batchSize, lr: dpoDefaults.lr, schedule: 'linear', lossType: 'sigmoid', reference: 'copy', betas: BETAS, pairs: 'sentimentPreferences(base, 4 samples per training prompt, 16 tokens, T 0.7, seeds 0 and 1): best vs worst, two draws' },
      checkpointEvery: every,
    },
    times: { ppoTrainSec: ppoSec, ppoStepSecMean: round(ppoSec / ppoSteps, 2), dpoPairSec: pairSec, dpoTrainSec: Object.fromEntries(dpoRuns.map((d) => [String(d.beta), d.trainSec])) },
    ppo: { run: { step: ppoResult.run.step, reward: Array.from(ppoResult.run.reward, (x) => round(x)), kl: Array.from(ppoResult.run.kl, (x) => round(x)) } },
    dpo: { pairs: rows.length, chosenScore: round(meanOf(prefs.map((p) => p.chosenScore))), rejectedScore: round(meanOf(prefs.map((p) => p.rejectedScore))), runs: dpoRuns },
    points,
    peakRssMiB: peakRssMiB(),
    tensorsLeft: tf.memory().numTensors,
    wallSec: round((Date.now() - started) / 1000, 1),
  };
  const json = `${JSON.stringify(out, null, 2)}\n`;
  if (!o.quick) fs.writeFileSync(path.join(__dirname, 'frontier-results.json'), json);
  process.stdout.write(json);
}

main().catch((e) => {
  console.error(e instanceof UsageError ? `bench:frontier: ${e.message}` : e);
  process.exit(1);
});
