import { strict as assert } from 'assert';
import * as tf from '@tensorflow/tfjs';
import { engineReady, maxAbsDiff } from '../helpers';
import { CausalLM } from '../../src/model/transformer';
import { base } from '../../src/lab/base';
import { addLora } from '../../src/peft/lora';
import { tokenLogProbs } from '../../src/rlhf/logprobs';
import { ScalarHead } from '../../src/rlhf/heads';
import { gae, whiten, shapeRewards, ppoPolicyLoss, ppoValueLoss } from '../../src/rlhf/advantages';
import { sampleResponses, responseLogProbs } from '../../src/rlhf/rollout';
import { PpoTrainer, ppo, type PpoConfig, type PpoStepMetrics } from '../../src/rlhf/ppo';
import { sentimentScore, sentimentPrompts, sentimentPreferences } from '../../src/rlhf/sentiment';
import type { TrainerEventSource } from '../../src/viz/live';
import { ppoChart } from '../../src/viz/charts';
import type { Tokenizer } from '../../src/tokenizer/tokenizer';

const close = (a: number, b: number, tol = 1e-6) => assert.ok(Math.abs(a - b) <= tol, `${a} ≉ ${b}`);
const scalar = (t: tf.Scalar) => t.dataSync()[0];

describe('rlhf/ppo: pure pieces', () => {
  before(engineReady);

  it('gae equals a hand computation', () => {
    // γ = 1, λ = 0.95: δ2 = 1 − .1 = .9; δ1 = .1 − .2 = −.1; δ0 = .2 − .5 = −.3
    const a = gae([0, 0, 1], [0.5, 0.2, 0.1], 1, 0.95);
    const expected = [-0.3 + 0.95 * (-0.1 + 0.95 * 0.9), -0.1 + 0.95 * 0.9, 0.9];
    expected.forEach((e, i) => close(a.advantages[i], e, 1e-12));
    [0.5, 0.2, 0.1].forEach((v, i) => close(a.returns[i], expected[i] + v, 1e-12));
    // γ = 0.9, λ = 0.5: δ2 = .9, δ1 = .09 − .2 = −.11, δ0 = .18 − .5 = −.32
    const b = gae([0, 0, 1], [0.5, 0.2, 0.1], 0.9, 0.5);
    close(b.advantages[1], -0.11 + 0.45 * 0.9, 1e-12);
    close(b.advantages[0], -0.32 + 0.45 * (-0.11 + 0.45 * 0.9), 1e-12);
  });

  it('per-token KL reward shaping equals a hand computation (k1 and k3)', () => {
    const { rewards, kl } = shapeRewards([-1, -2, -0.5], [-1.5, -1, -0.5], 2, 0.1);
    [0.5, -1, 0].forEach((k, i) => close(kl[i], k, 1e-12));
    [-0.05, 0.1, 2].forEach((r, i) => close(rewards[i], r, 1e-12));
    const k3 = shapeRewards([-1, -2, -0.5], [-1.5, -1, -0.5], 2, 0.1, 'k3').kl; // log r = ref − logπ
    [Math.exp(-0.5) + 0.5 - 1, Math.exp(1) - 1 - 1, 0].forEach((k, i) => close(k3[i], k, 1e-12));
  });

  it('whitening matches (unbiased variance; shiftMean false keeps the mean)', () => {
    const sd = Math.sqrt(5 / 3 + 1e-8);
    const w = whiten([1, 2, 3, 4]);
    [-1.5, -0.5, 0.5, 1.5].forEach((d, i) => close(w[i], d / sd, 1e-12));
    const k = whiten([1, 2, 3, 4], false);
    [-1.5, -0.5, 0.5, 1.5].forEach((d, i) => close(k[i], d / sd + 2.5, 1e-12));
  });

  it('clipped policy and value losses equal hand computation', () => {
    const ln = Math.log(1.5);
    const mask = tf.tensor2d([[1, 1, 1, 0]]);
    // ratios 1, 1.5, 1.5 (and a masked 3); advantages 1, −1, 1 (masked 5)
    const pg = ppoPolicyLoss(tf.tensor2d([[0, ln, ln, Math.log(3)]]), tf.zeros([1, 4]), tf.tensor2d([[1, -1, 1, 5]]), mask, 0.2);
    // max(−A·r, −A·clip(r)): −1; max(1.5, 1.2) = 1.5; max(−1.5, −1.2) = −1.2
    close(scalar(pg.loss), (-1 + 1.5 - 1.2) / 3, 1e-6);
    close(scalar(pg.clipfrac), 1 / 3, 1e-6);
    close(scalar(pg.approxkl), (0.5 * (2 * ln * ln)) / 3, 1e-6);
    close(scalar(pg.ratio), 4 / 3, 1e-6);
    const vmask = tf.tensor2d([[1, 1, 1]]);
    const vf = ppoValueLoss(tf.tensor2d([[1, 0, 0.5]]), tf.tensor2d([[0.5, 0.5, 0.5]]), tf.tensor2d([[2, 0, 0.5]]), vmask, 0.2);
    // clipped values .7, .3, .5 → losses max(1, 1.69), max(0, .09), 0
    close(scalar(vf.loss), (0.5 * (1.69 + 0.09)) / 3, 1e-6);
    close(scalar(vf.clipfrac), 2 / 3, 1e-6);
  });

  it('gradient of the PPO loss matches finite differences on a tiny model', () => {
    const model = CausalLM.create({ family: 'llama', vocabSize: 16, dModel: 8, nLayers: 1, nHeads: 2, nKvHeads: 1, dFf: 16, contextLength: 8 }, { seed: 3 });
    const head = new ScalarHead(model, 'value', { seed: 1 });
    const ids = tf.tensor2d([[1, 5, 7, 2, 9], [3, 3, 8, 4, 0]], [2, 5], 'int32');
    const targets = tf.tensor2d([[5, 7, 2, 9, 0], [3, 8, 4, 0, 0]], [2, 5], 'int32');
    const mask = tf.tensor2d([[0, 1, 1, 1, 0], [1, 1, 1, 0, 0]]);
    // Old log-probs shifted from the current ones so some ratios sit outside [0.8, 1.2] (clipped) and some inside.
    const lp0 = tf.tidy(() => tokenLogProbs(tf.div(model.forward(ids), 0.7) as tf.Tensor3D, targets));
    const old = tf.add(lp0, tf.tensor2d([[0, 0.05, -0.4, 0.1, 0], [0.3, -0.02, 0.07, 0, 0]]));
    const adv = tf.tensor2d([[0, 1.2, -0.7, 0.4, 0], [-1, 0.8, 0.3, 0, 0]]);
    const oldV = tf.tensor2d([[0, 0.1, -0.2, 0.3, 0], [0.2, 0.1, 0, 0, 0]]);
    const ret = tf.tensor2d([[0, 0.9, -0.1, 0.35, 0], [0.5, 0.1, -0.05, 0, 0]]);
    const loss = () => tf.tidy(() => {
      const h = model.hidden(ids);
      const lp = tokenLogProbs(tf.div(model.head(h), 0.7) as tf.Tensor3D, targets);
      return tf.add(ppoPolicyLoss(lp, old, adv, mask, 0.2).loss, tf.mul(0.1, ppoValueLoss(head.apply(h), oldV, ret, mask, 0.2).loss)) as tf.Scalar;
    });
    const w = model.weight('layers.0.mlp.down_proj.weight');
    const { grads } = tf.variableGrads(loss, [w, head.weight]);
    for (const v of [w, head.weight]) {
      const g = grads[v.name].dataSync();
      // The two entries with the largest gradient: finite differences there are well above float32 noise.
      const top = Array.from(g.keys()).sort((a, b) => Math.abs(g[b]) - Math.abs(g[a])).slice(0, 2);
      for (const i of top) {
        const at = (delta: number) => {
          const vals = v.dataSync().slice();
          vals[i] += delta;
          tf.tidy(() => v.assign(tf.tensor(vals, v.shape)));
          const l = scalar(loss());
          vals[i] -= delta;
          tf.tidy(() => v.assign(tf.tensor(vals, v.shape)));
          return l;
        };
        const eps = 2e-3;
        const fd = (at(eps) - at(-eps)) / (2 * eps);
        assert.ok(Math.abs(fd - g[i]) <= 0.03 * Math.abs(g[i]) + 2e-4, `${v.name}[${i}]: analytic ${g[i]} vs finite difference ${fd}`);
      }
    }
    tf.dispose([...Object.values(grads), ids, targets, mask, lp0, old, adv, oldV, ret]);
    head.dispose();
    model.dispose();
  });
});

describe('rlhf/sentiment', () => {
  it('scores AFINN-111 valences / 5, phrases first', () => {
    close(sentimentScore('A great and happy nation.'), 1.2, 1e-12);
    close(sentimentScore('This is NOT GOOD'), -0.4, 1e-12); // "not good" −2, not "good" +3
    close(sentimentScore("I can't stand war"), (-3 - 2) / 5, 1e-12);
    assert.equal(sentimentScore('the table and the chair'), 0);
  });

  it('prompts: 6–10 words of corpus sentences, seeded', () => {
    const a = sentimentPrompts(20, 5);
    assert.deepEqual(a, sentimentPrompts(20, 5));
    assert.notDeepEqual(a, sentimentPrompts(20, 6));
    for (const p of a) {
      const n = p.split(' ').length;
      assert.ok(n >= 6 && n <= 10, p);
    }
  });
});

describe('rlhf/ppo on the shipped base', function () {
  let model: CausalLM;
  let tok: Tokenizer;
  before(async () => {
    await engineReady();
    ({ model, tokenizer: tok } = await base('tiny-llama'));
  });
  after(() => model?.dispose());

  it('rollout log-probs and values from the KV cache equal a full forward pass; rows do not depend on grouping', () => {
    const prompts = ['The nation is', 'We must work together for the', 'In the beginning God', 'The people of this country'].map((p) => tok.encode(p));
    const head = new ScalarHead(model, 'value', { seed: 2 });
    try {
      const seeds = [11, 12, 13, 14];
      const r = sampleResponses(model, prompts, { maxNewTokens: 10, temperature: 0.7, seeds, valueHead: head, stopTokenId: tok.specialTokens.eos!.id });
      const full = responseLogProbs(model, prompts, r.responseIds, 0.7);
      r.logprobs.forEach((row, i) => assert.ok(maxAbsDiff(row, full[i]) < 1e-3, `row ${i}: ${maxAbsDiff(row, full[i])}`));
      // Values from a full forward pass at the positions that precede each response token.
      r.responseIds.forEach((resp, i) => {
        const seq = [...prompts[i], ...resp];
        const v = tf.tidy(() => head.apply(model.hidden(tf.tensor2d([seq], [1, seq.length], 'int32')))).dataSync();
        const expected = resp.map((_, j) => v[prompts[i].length - 1 + j]);
        assert.ok(maxAbsDiff(r.values[i], expected) < 1e-4, `values row ${i}`);
      });
      const alone = sampleResponses(model, [prompts[2]], { maxNewTokens: 10, temperature: 0.7, seeds: [13], stopTokenId: tok.specialTokens.eos!.id });
      assert.deepEqual(alone.responseIds[0], r.responseIds[2]);
    } finally {
      head.dispose();
    }
  });

  it('with an adapter, the reference is the base with adapters off (no copy; KL 0 at the start)', async () => {
    const m = model.clone();
    addLora(m, { r: 4 });
    const r = await ppo(m, tok, sentimentPrompts(8, 3), (_p, resp) => sentimentScore(resp), { maxSteps: 1, batchSize: 4, responseLength: 6, missingEosPenalty: 1 });
    assert.equal(r.memory.referenceBytes, 0);
    // No response reaches eos in 6 tokens here, so every score carries the penalty.
    assert.equal(r.history[0]['val/num_eos_tokens'], 0);
    for (const s of r.samples) close(s.score, sentimentScore(s.response) - 1, 1e-12);
    close(r.history[0]['objective/kl'], 0, 1e-3); // LoRA's B = 0: policy = reference before the update
    assert.equal(m.adapterParams.has('heads.value.weight'), false); // ppo() removes its value head
    m.dispose();
  });

  it('raises the sentiment reward with finite KL; flat tensor count; same seed, same metrics', async function () {
    // All prompts of one token length, so each rollout samples as one batch (the model has no padding
    // mask; mixed lengths sample per length group, ~4× slower here). lr 3e-4 so the trend shows in 16 steps.
    const fresh = model.clone();
    const prompts = sentimentPrompts(400, 1).filter((p) => tok.encode(p).length === 11).slice(0, 32);
    assert.ok(prompts.length >= 16);
    const config: Partial<PpoConfig> = { maxSteps: 16, batchSize: 16, lr: 3e-4, schedule: 'constant', responseLength: 12, seed: 1 };
    const trainer = new PpoTrainer(model, tok, prompts, (_p, r) => sentimentScore(r), config);
    const source: TrainerEventSource = trainer; // `progress(trainer)` / `liveLossChart(trainer)` accept it
    const counts: number[] = [];
    let ended = false;
    source.on('step', () => counts.push(tf.memory().numTensors));
    source.on('end', () => (ended = true));
    const t0 = Date.now();
    const result = await trainer.train();
    const seconds = (Date.now() - t0) / 1000;
    trainer.dispose();
    const scores = result.history.map((m) => m['objective/scores']);
    const kls = result.history.map((m) => m['objective/kl']);
    const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
    console.log(`      PPO ${result.steps} steps in ${seconds.toFixed(1)} s; scores ${scores.map((s) => s.toFixed(2)).join(' ')}; KL ${kls.map((k) => k.toFixed(2)).join(' ')}`);
    assert.ok(ended);
    assert.ok(mean(scores.slice(-4)) > mean(scores.slice(0, 4)) + 0.05, `reward did not rise: ${scores}`);
    assert.ok(kls.every(Number.isFinite) && Math.abs(kls[0]) < 1e-2, `KL ${kls}`);
    assert.ok(counts.every((c) => c === counts[0]), `tensor count grew: ${counts}`);
    for (const key of ['objective/entropy', 'objective/non_score_reward', 'objective/rlhf_reward', 'policy/approxkl_avg', 'policy/clipfrac_avg',
      'loss/policy_avg', 'loss/value_avg', 'val/clipfrac_avg', 'val/ratio', 'val/ratio_var', 'eps', 'lr', 'episode'] as const) {
      assert.ok(Number.isFinite(result.history[0][key]), key);
    }
    close(result.history[0]['objective/rlhf_reward'], scores[0] + result.history[0]['objective/non_score_reward'], 1e-9);
    assert.equal(result.history.at(-1)!.episode, 16 * 16);
    assert.equal(result.memory.referenceBytes, result.memory.policyBytes);
    assert.equal(result.memory.valueHeadBytes, (128 + 1) * 4);
    assert.equal(result.samples.length, 16 * 2);
    assert.ok(ppoChart(result.run).mimeBundle());

    // Same seed, same metrics (timing fields aside), from the same starting weights.
    const again = await ppo(fresh, tok, prompts, (_p, r) => sentimentScore(r), { ...config, maxSteps: 2 });
    const strip = (m: PpoStepMetrics) => Object.fromEntries(Object.entries(m).filter(([k]) => !['elapsedMs', 'etaMs', 'tokensPerSec', 'eps'].includes(k)));
    assert.deepEqual(again.history.map(strip), result.history.slice(0, 2).map(strip));
    fresh.dispose();
  });

  it('sentimentPreferences: best vs worst of k samples', () => {
    const rows = sentimentPreferences(model, tok, sentimentPrompts(4, 9), { samplesPerPrompt: 3, maxNewTokens: 8, seed: 1 });
    for (const r of rows) {
      assert.ok(r.chosenScore > r.rejectedScore);
      close(sentimentScore(r.chosen), r.chosenScore, 1e-12);
      assert.equal(typeof r.prompt, 'string');
    }
  });
});
