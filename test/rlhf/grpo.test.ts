import { strict as assert } from 'assert';
import * as tf from '@tensorflow/tfjs';
import { engineReady } from '../helpers';
import { CausalLM } from '../../src/model/transformer';
import { base } from '../../src/lab/base';
import { sft } from '../../src/train/sft';
import { tokenLogProbs } from '../../src/rlhf/logprobs';
import { groupAdvantages } from '../../src/rlhf/advantages';
import { grpo, grpoLoss, GrpoTrainer, type GrpoConfig, type GrpoStepMetrics } from '../../src/rlhf/grpo';
import { rloo } from '../../src/rlhf/rloo';
import { largestDigitTask } from '../../src/rlhf/tasks';
import { policyRewardKl } from '../../src/rlhf/frontier';
import type { TrainerEventSource } from '../../src/viz/live';
import type { Tokenizer } from '../../src/tokenizer/tokenizer';

const close = (a: number, b: number, tol = 1e-6) => assert.ok(Math.abs(a - b) <= tol, `${a} ≉ ${b}`);
const scalar = (t: tf.Scalar) => t.dataSync()[0];

describe('rlhf/grpo: advantages', () => {
  // Two groups of 4: [1, 0, 0, 1] (mean .5, unbiased std √(1/3)) and [2, 2, 2, 2] (std 0).
  const rewards = [1, 0, 0, 1, 2, 2, 2, 2];
  const sd = Math.sqrt(1 / 3);

  it('group mean baseline, with and without the group std (Dr. GRPO)', () => {
    const scaled = groupAdvantages(rewards, 4, { baseline: 'mean', scaleRewards: 'group' });
    [0.5, -0.5, -0.5, 0.5].forEach((d, i) => close(scaled[i], d / (sd + 1e-4), 1e-12));
    scaled.slice(4).forEach((a) => close(a, 0, 1e-12)); // all equal: no signal, not 0/0
    const raw = groupAdvantages(rewards, 4, { baseline: 'mean', scaleRewards: 'none' });
    assert.deepEqual(raw, [0.5, -0.5, -0.5, 0.5, 0, 0, 0, 0]);
  });

  it("'batch' scales by the std of the whole batch, centred per group", () => {
    // batch mean 1.25; Σ(r − 1.25)² = 2·.0625 + 2·1.5625 + 4·.5625 = 5.5; unbiased var 5.5/7
    const a = groupAdvantages(rewards, 4, { baseline: 'mean', scaleRewards: 'batch' });
    close(a[0], 0.5 / (Math.sqrt(5.5 / 7) + 1e-4), 1e-12);
    close(a[5], 0, 1e-12);
  });

  it("RLOO's leave-one-out baseline: r_i − mean of the other G − 1", () => {
    const a = groupAdvantages([1, 0, 0, 1, 3, 0, 0, 0], 4, { baseline: 'leave-one-out', scaleRewards: 'none' });
    // 1 − (0 + 0 + 1)/3; 0 − (1 + 0 + 1)/3; 3 − 0; 0 − 3/3
    [2 / 3, -2 / 3, -2 / 3, 2 / 3, 3, -1, -1, -1].forEach((e, i) => close(a[i], e, 1e-12));
    assert.throws(() => groupAdvantages([1, 0, 1], 2, { baseline: 'mean', scaleRewards: 'none' }), /3 rewards do not split into groups of 2/);
    assert.throws(() => groupAdvantages([1], 1, { baseline: 'leave-one-out', scaleRewards: 'none' }), /at least 2/);
  });
});

describe('rlhf/grpo: loss', () => {
  before(engineReady);

  // Two completions: 3 and 2 response tokens (the third of row 2 is padding).
  const lpRows = [[-1, -2, -0.5], [-0.3, -1.2, -9]];
  const oldRows = [[-1, -2 - Math.log(1.5), -0.5 + Math.log(1.1)], [-0.3 + Math.log(1.3), -1.2 - Math.log(0.7), 0]];
  const refRows = [[-1.5, -1, -0.5], [-0.2, -1.4, 0]];
  const advs = [1, -2];
  const mask = [[1, 1, 1], [1, 1, 0]];

  /** The same loss written out token by token. */
  function byHand(beta: number, lossType: 'grpo' | 'dapo' | 'dr_grpo', epsHigh = 0.2) {
    const per: number[][] = lpRows.map((row, i) => row.map((lp, t) => {
      if (!mask[i][t]) return 0;
      const ratio = Math.exp(lp - oldRows[i][t]);
      const clipped = Math.min(Math.max(ratio, 0.8), 1 + epsHigh);
      const d = refRows[i][t] - lp;
      return -Math.min(ratio * advs[i], clipped * advs[i]) + beta * (Math.exp(d) - d - 1);
    }));
    const counts = mask.map((m) => m.reduce((a, b) => a + b, 0));
    const rowSums = per.map((r) => r.reduce((a, b) => a + b, 0));
    if (lossType === 'grpo') return (rowSums[0] / counts[0] + rowSums[1] / counts[1]) / 2;
    if (lossType === 'dapo') return (rowSums[0] + rowSums[1]) / (counts[0] + counts[1]);
    return (rowSums[0] + rowSums[1]) / (2 * 8);
  }

  for (const lossType of ['grpo', 'dapo', 'dr_grpo'] as const) {
    it(`equals a hand computation (${lossType}, β 0.1, k3 KL)`, () => {
      const out = grpoLoss(tf.tensor2d(lpRows), tf.tensor2d(oldRows), tf.tensor2d(refRows), tf.tensor2d(advs, [2, 1]), tf.tensor2d(mask),
        { epsilon: 0.2, epsilonHigh: null, beta: 0.1, lossType, maxCompletionLength: 8 });
      close(scalar(out.loss), byHand(0.1, lossType), 1e-5);
      // k3 = e^d − d − 1 with d = log π_ref − log π, mean over the 5 response tokens
      const ds = [-0.5, 1, 0, 0.1, -0.2];
      close(scalar(out.kl), ds.reduce((s, d) => s + Math.exp(d) - d - 1, 0) / 5, 1e-6);
    });
  }

  it('clip ratios: low with a negative advantage, high with a positive one; epsilonHigh widens the top', () => {
    // ratios: row 1 (A = 1): 1, 1.5, 1/1.1; row 2 (A = −2): 1/1.3, 0.7
    const run = (epsilonHigh: number | null) => grpoLoss(tf.tensor2d(lpRows), tf.tensor2d(oldRows), null, tf.tensor2d(advs, [2, 1]), tf.tensor2d(mask),
      { epsilon: 0.2, epsilonHigh, beta: 0, lossType: 'dapo', maxCompletionLength: 8 });
    const a = run(null);
    close(scalar(a.clipHigh), 1 / 5);  // 1.5 > 1.2 with A > 0
    close(scalar(a.clipLow), 2 / 5);   // 0.769 and 0.7 < 0.8 with A < 0
    close(scalar(a.clipRegion), 3 / 5);
    close(scalar(a.kl), 0);            // no reference
    close(scalar(a.loss), byHand(0, 'dapo'), 1e-5);
    const b = run(0.6);
    close(scalar(b.clipHigh), 0);
    close(scalar(b.loss), byHand(0, 'dapo', 0.6), 1e-5);
  });

  it('gradient matches finite differences on a tiny model (β 0.1, grpo reduction)', () => {
    const model = CausalLM.create({ family: 'llama', vocabSize: 16, dModel: 8, nLayers: 1, nHeads: 2, nKvHeads: 1, dFf: 16, contextLength: 8 }, { seed: 5 });
    const ids = tf.tensor2d([[1, 5, 7, 2, 9], [3, 3, 8, 4, 0]], [2, 5], 'int32');
    const targets = tf.tensor2d([[5, 7, 2, 9, 0], [3, 8, 4, 0, 0]], [2, 5], 'int32');
    const m = tf.tensor2d([[0, 1, 1, 1, 0], [0, 0, 1, 1, 0]]);
    const lp0 = tf.tidy(() => tokenLogProbs(model.forward(ids), targets));
    // Old and reference log-probs off the current ones, so some ratios are clipped and the KL is not 0.
    const old = tf.add(lp0, tf.tensor2d([[0, 0.05, -0.4, 0.3, 0], [0, 0, 0.07, -0.3, 0]])) as tf.Tensor2D;
    const ref = tf.add(lp0, tf.tensor2d([[0, 0.2, -0.1, 0.3, 0], [0, 0, -0.25, 0.15, 0]])) as tf.Tensor2D;
    const adv = tf.tensor2d([[1.3], [-0.6]]);
    const c = { epsilon: 0.2, epsilonHigh: null, beta: 0.1, lossType: 'grpo' as const, maxCompletionLength: 8 };
    const loss = () => tf.tidy(() => grpoLoss(tokenLogProbs(model.forward(ids), targets), old, ref, adv, m, c).loss);
    const w = model.weight('layers.0.mlp.down_proj.weight');
    const { grads } = tf.variableGrads(loss, [w]);
    const g = grads[w.name].dataSync();
    const top = Array.from(g.keys()).sort((a, b) => Math.abs(g[b]) - Math.abs(g[a])).slice(0, 3);
    for (const i of top) {
      const at = (delta: number) => {
        const vals = w.dataSync().slice();
        vals[i] += delta;
        tf.tidy(() => w.assign(tf.tensor(vals, w.shape)));
        const l = scalar(loss());
        vals[i] -= delta;
        tf.tidy(() => w.assign(tf.tensor(vals, w.shape)));
        return l;
      };
      const eps = 2e-3;
      const fd = (at(eps) - at(-eps)) / (2 * eps);
      assert.ok(Math.abs(fd - g[i]) <= 0.03 * Math.abs(g[i]) + 2e-4, `[${i}]: analytic ${g[i]} vs finite difference ${fd}`);
    }
    tf.dispose([...Object.values(grads), ids, targets, m, lp0, old, ref, adv]);
    model.dispose();
  });
});

describe('rlhf/grpo on the shipped base', function () {
  let model: CausalLM;
  let tok: Tokenizer;
  const task = largestDigitTask();
  before(async () => {
    await engineReady();
    ({ model, tokenizer: tok } = await base('tiny-llama'));
    // The base answers none of these (exact match 0): a short SFT warm-up teaches the format and part of the skill.
    await sft(model, tok, task.sftRows('train'), { maxSteps: 60, lr: 1e-3, batchSize: 8, seed: 0 });
  });
  after(() => model?.dispose());

  const quick: Partial<GrpoConfig> = { maxSteps: 1, batchSize: 2, numGenerations: 4, maxCompletionLength: 4, seed: 3 };

  it('β 0 holds no reference (memory and tensor bytes); β > 0 holds a frozen copy', () => {
    const before = tf.memory().numBytes;
    const none = new GrpoTrainer(model, tok, task.prompts('train'), task.reward, { ...quick, beta: 0 });
    const withoutRef = tf.memory().numBytes - before;
    const withRef0 = tf.memory().numBytes;
    const held = new GrpoTrainer(model, tok, task.prompts('train'), task.reward, { ...quick, beta: 0.04 });
    const withRef = tf.memory().numBytes - withRef0;
    try {
      assert.equal(none.reference, undefined);
      assert.equal(none.memory().referenceBytes, 0);
      const policy = held.memory().policyBytes;
      assert.equal(held.memory().referenceBytes, policy);
      // The copy's weights, plus its small non-weight buffers (RoPE tables).
      const extra = withRef - withoutRef;
      assert.ok(extra >= policy && extra < 1.02 * policy, `bytes: ${withRef} with a reference vs ${withoutRef} without (policy ${policy})`);
    } finally {
      none.dispose();
      held.dispose();
    }
  });

  it('several rewards with weights; TRL metric names; RLOO advantages are leave-one-out', async () => {
    const m = model.clone();
    const short = (_p: string, c: string) => (c.trim().length === 1 ? 1 : 0);
    const r = await grpo(m, tok, task.prompts('train'), [task.reward, short], { ...quick, rewardWeights: [1, 0.5], logSamples: 8 });
    const h = r.history[0];
    close(h.reward, h['rewards/exact_match/mean'] + 0.5 * h['rewards/short/mean'], 1e-9);
    for (const key of ['reward_std', 'frac_reward_zero_std', 'kl', 'entropy', 'completions/mean_length', 'completions/min_length', 'completions/max_length',
      'completions/clipped_ratio', 'clip_ratio/low_mean', 'clip_ratio/high_mean', 'clip_ratio/region_mean', 'num_tokens', 'rewards/short/std'] as const) {
      assert.ok(Number.isFinite(h[key]), key);
    }
    for (const s of r.samples) close(s.reward, task.reward(s.prompt, s.completion) + 0.5 * short(s.prompt, s.completion), 1e-12);
    // The samples are the step's 8 completions: per-reward std (unbiased) and the mean in-group std by hand.
    assert.equal(r.samples.length, 8);
    const std = (xs: number[]) => Math.sqrt(xs.reduce((a, x) => a + (x - xs.reduce((p, q) => p + q, 0) / xs.length) ** 2, 0) / (xs.length - 1));
    close(h['rewards/exact_match/std'], std(r.samples.map((s) => task.reward(s.prompt, s.completion))), 1e-12);
    close(h.reward_std, (std(r.samples.slice(0, 4).map((s) => s.reward)) + std(r.samples.slice(4).map((s) => s.reward))) / 2, 1e-12);
    assert.throws(() => new GrpoTrainer(m, tok, task.prompts('train'), [task.reward, short], { rewardWeights: [1] }), /grpo: rewardWeights must be null or 2 finite numbers/);
    assert.throws(() => new GrpoTrainer(m, tok, task.prompts('train'), task.reward, { numGenerations: 1 }), /grpo: numGenerations must be ≥ 2/);
    assert.throws(() => new GrpoTrainer(m, tok, task.prompts('train'), task.reward, { lossTyp: 'grpo' } as never), /lossTyp/);

    const rl = await rloo(m, tok, task.prompts('train'), task.reward, { ...quick, logSamples: 8 });
    const group = rl.samples.slice(0, 4); // the first prompt's k = 4 completions
    const rs = group.map((s) => s.reward);
    group.forEach((s, i) => close(s.advantage, rs[i] - (rs.reduce((a, b) => a + b, 0) - rs[i]) / 3, 1e-9));
    m.dispose();
  });

  it('a reward model (an object with scoreTexts, async) beside a function; its name is its position', async () => {
    const m = model.clone();
    const seen: { prompt: string; response: string }[] = [];
    const lengthModel = { scoreTexts: async (items: { prompt: string; response: string }[]) => (seen.push(...items), items.map((i) => i.response.length)) };
    const r = await grpo(m, tok, task.prompts('train'), [task.reward, lengthModel], { ...quick, logSamples: 8 });
    assert.equal(seen.length, 2 * 4);
    const h = r.history[0];
    close(h['rewards/reward_1/mean'], seen.reduce((a, i) => a + i.response.length, 0) / seen.length, 1e-9);
    for (const s of r.samples) close(s.reward, task.reward(s.prompt, s.completion) + s.completion.length, 1e-12);
    const broken = { scoreTexts: () => [1] };
    await assert.rejects(() => grpo(m, tok, task.prompts('train'), broken, quick), /grpo: reward "reward_0" returned 1 scores for 8 completions/);
    m.dispose();
  });

  it('raises held-out exact match; flat tensor count; same seed, same metrics', async function () {
    const fresh = model.clone();
    const reference = model.clone();
    const heldout = task.prompts('heldout').slice(0, 60);
    const score = async () => (await policyRewardKl(model, reference, tok, heldout, task.reward, { samplesPerPrompt: 2, responseLength: 4, temperature: 1, seed: 1 })).reward;
    const before = await score();
    const config: Partial<GrpoConfig> = { maxSteps: 12, batchSize: 8, numGenerations: 8, maxCompletionLength: 4, beta: 0.04, schedule: 'constant', seed: 1 };
    const trainer = new GrpoTrainer(model, tok, task.prompts('train'), task.reward, config);
    const source: TrainerEventSource = trainer; // progress(trainer) / liveMetricsChart(trainer) accept it
    const counts: number[] = [];
    source.on('step', () => counts.push(tf.memory().numTensors));
    const t0 = Date.now();
    const result = await trainer.train();
    const seconds = (Date.now() - t0) / 1000;
    trainer.dispose();
    const after = await score();
    const rewards = result.history.map((m) => m.reward);
    console.log(`      GRPO ${result.steps} steps in ${seconds.toFixed(1)} s; reward ${rewards.map((s) => s.toFixed(2)).join(' ')}; held-out sampled exact match ${before.toFixed(3)} → ${after.toFixed(3)}`);
    assert.ok(after > before + 0.05, `held-out exact match did not rise: ${before} → ${after}`);
    assert.ok(counts.every((c) => c === counts[0]), `tensor count grew: ${counts}`);
    close(result.history[0].kl, 0, 1e-3); // the reference is the starting policy
    assert.ok(result.history.every((m) => Number.isFinite(m.kl) && m.kl >= 0));

    const again = await grpo(fresh, tok, task.prompts('train'), task.reward, { ...config, maxSteps: 2 });
    const strip = (m: GrpoStepMetrics) => Object.fromEntries(Object.entries(m).filter(([k]) => !['elapsedMs', 'etaMs', 'tokensPerSec'].includes(k)));
    assert.deepEqual(again.history.map(strip), result.history.slice(0, 2).map(strip));
    fresh.dispose();
    reference.dispose();
  });
});
