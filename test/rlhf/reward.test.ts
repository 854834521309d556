import { strict as assert } from 'assert';
import * as tf from '@tensorflow/tfjs';
import { CausalLM } from '../../src/model';
import type { Tokenizer } from '../../src/tokenizer/tokenizer';
import { base } from '../../src/lab/base';
import { dataset } from '../../src/lab/data';
import type { PreferenceRow } from '../../src/data/tokenize';
import { addLora } from '../../src/peft/lora';
import { peft } from '../../src/peft/peft';
import { rewardAccuracyChart } from '../../src/viz/charts';
import {
  RewardModel, asRewardFunction, bradleyTerryLoss, rewardAccuracy, rewardBatch, rewardDefaults, disposeRewardBatch, trainRewardModel,
} from '../../src/rlhf/reward';
import { engineReady, maxAbsDiff } from '../helpers';

const tiny = { family: 'llama' as const, dModel: 16, nLayers: 1, nHeads: 2, nKvHeads: 1, dFf: 32, contextLength: 16 };
const softplus = (x: number) => Math.log1p(Math.exp(x));
const host = (m: CausalLM) => new Map([...m.params].map(([k, p]) => [k, p.variable.dataSync().slice()]));
const prefs = (split: 'train' | 'heldout') => dataset('preferences', split) as unknown as (PreferenceRow & { source: string })[];
/** Enough of a tokenizer for batches of raw ids (pad 2, eos 0). */
const idsOnly = { source: 'ids', specialTokens: { eos: { id: 0, token: '' }, pad: { id: 2, token: '' } } } as unknown as Tokenizer;

describe('rlhf/reward', function () {
  this.timeout(120000);
  before(engineReady);

  it('Bradley-Terry loss equals the hand computation, with and without the centering term', () => {
    const c = tf.tensor1d([2, 0, -1]);
    const r = tf.tensor1d([1, 1, -1]);
    const plain = (softplus(-1) + softplus(1) + Math.log(2)) / 3;
    const [a, b] = [bradleyTerryLoss(c, r), bradleyTerryLoss(c, r, 0.1)];
    assert.ok(Math.abs(a.dataSync()[0] - plain) < 1e-6);
    assert.ok(Math.abs(b.dataSync()[0] - (plain + (0.1 * (9 + 1 + 4)) / 3)) < 1e-6);
    // Large margins stay finite (softplus form): −log σ(100) ≈ 0, −log σ(−100) ≈ 100.
    const big = bradleyTerryLoss(tf.tensor1d([100, -100]), tf.tensor1d([0, 0]));
    assert.ok(Math.abs(big.dataSync()[0] - 50) < 1e-4);
    tf.dispose([c, r, a, b, big]);
  });

  it('head-weight gradient matches finite differences on a tiny model', () => {
    const model = CausalLM.create({ ...tiny, vocabSize: 64 }, { seed: 3 });
    const rm = new RewardModel(model, idsOnly, { std: 0.3, seed: 5 });
    const seqs = [[1, 5, 9, 11, 0], [1, 5, 7, 0], [1, 8, 30, 40, 50, 0], [1, 8, 31, 0]];
    const batch = rewardBatch(seqs, { pad: 2, eos: 0 }, 2);
    for (const coef of [null, 0.05]) {
      const lossOf = () => tf.tidy(() => {
        const r = rm.rewards(batch);
        return bradleyTerryLoss(tf.slice(r, 0, 2), tf.slice(r, 2, 2), coef);
      });
      const { grads, value } = tf.variableGrads(lossOf, [rm.head.weight, rm.head.bias]);
      const g = grads[rm.head.weight.name].dataSync().slice();
      const gb = grads[rm.head.bias.name].dataSync()[0];
      tf.dispose([value, ...Object.values(grads)]);
      const w = rm.head.weight.dataSync().slice();
      const eps = 1e-2;
      const at = (i: number, d: number) => {
        const x = w.slice();
        x[i] += d;
        rm.head.weight.assign(tf.tensor2d(x, [w.length, 1]));
        const l = lossOf();
        const v = l.dataSync()[0];
        l.dispose();
        return v;
      };
      for (let i = 0; i < w.length; i++) {
        const fd = (at(i, eps) - at(i, -eps)) / (2 * eps);
        assert.ok(Math.abs(fd - g[i]) < 2e-3 + 1e-2 * Math.abs(g[i]), `coef ${coef} w[${i}]: analytic ${g[i]} vs finite difference ${fd}`);
      }
      rm.head.weight.assign(tf.tensor2d(w, [w.length, 1]));
      // The bias cancels in r_c − r_r: zero gradient unless the centering term pulls the rewards' sum.
      if (coef === null) assert.ok(Math.abs(gb) < 1e-6, `bias gradient ${gb}`);
      else assert.ok(Math.abs(gb) > 1e-6);
    }
    disposeRewardBatch(batch);
    model.dispose();
  });

  describe('on the shipped base', () => {
    let model: CausalLM;
    let tok: Tokenizer;
    beforeEach(async () => ({ model, tokenizer: tok } = await base('tiny-llama')));
    afterEach(() => model.dispose());

    it('reads the score at the last real token: padding with longer items changes nothing', () => {
      const rm = new RewardModel(model, tok, { std: 0.5 });
      const short = { prompt: 'What is a shawl?', response: ' A cloak.' };
      const long = { prompt: 'Continue the text:\n\nThe state of the Union is good, and we have done much this year.', response: ' Taken in sum, I can report that the state of the Union is strong.' };
      const alone = rm.score(short.prompt, short.response);
      const [inBatch, longScore] = rm.scoreTexts([short, long]);
      // Float32 tolerance relative to the score: a padded batch is a different product shape, so the native
      // GEMM may block (and sum) it differently.
      const tol = 1e-5 * Math.max(1, Math.abs(alone));
      assert.ok(Math.abs(alone - inBatch) < tol, `alone ${alone} vs padded ${inBatch}`);
      assert.ok(Math.abs(longScore - alone) > 1e-4, 'different texts score differently');
      // Scoring ids are the training ids: the chosen side of a preference pair with the same text.
      const ids = rm.encode(short.prompt, short.response);
      assert.equal(ids.at(-1), tok.specialTokens.eos!.id);
      assert.equal(asRewardFunction(rm)(short.prompt, short.response), alone);
      // The head reads the hidden state at the last id (its EOS), here recomputed by hand.
      const byHand = tf.tidy(() => {
        const h = model.hidden(tf.tensor2d([ids], [1, ids.length], 'int32'));
        const last = tf.slice(h, [0, ids.length - 1, 0], [1, 1, -1]).reshape([1, -1]);
        return tf.add(tf.matMul(last, rm.head.weight), rm.head.bias).dataSync()[0];
      });
      assert.ok(Math.abs(byHand - alone) < tol);
      const mem = rm.memory();
      assert.equal(mem.headParams, model.config.dModel + 1);
      // ≥: ScalarHead keeps its init tensors besides the variables (2 tensors, 516 B here; reported).
      assert.ok(mem.createdTensors >= 2 && mem.createdBytes >= 4 * (model.config.dModel + 1));
      assert.equal(mem.baseParams, model.paramCount());
    });

    it('training raises held-out accuracy well above chance and above the untrained head', async () => {
      // Sized for the 90 s budget (about 0.8 s a step on 2 cores): the shuffled-sentence pairs (general/*
      // sources) are what a 1M-param model learns in tens of steps; WordNet and FAQ pairs need knowledge
      // it lacks (≈ chance after short runs), so the assertion is on the held-out general/* pairs.
      const general = (r: { source: string }) => r.source.startsWith('general/');
      const train = prefs('train').filter(general);
      const held = prefs('heldout').filter(general);
      const untrained = new RewardModel(model, tok, { seed: 42 }); // the head training starts from
      const before = rewardAccuracy(untrained, held);
      untrained.dispose();
      const t0 = Date.now();
      const r = await trainRewardModel(model, tok, train, { lr: 1e-3, maxSteps: 24, batchSize: 6, evalRows: held, evalEvery: 12, seed: 42 });
      const ms = Date.now() - t0;
      const after = r.evalAccuracy.at(-1)!;
      const all = rewardAccuracy(r.rewardModel, prefs('heldout'));
      console.log(`      reward model: held-out general/* accuracy ${before.accuracy.toFixed(3)} → ${after.accuracy.toFixed(3)} (${before.margins.length} pairs; loss ${before.loss.toFixed(3)} → ${after.loss.toFixed(3)}), `
        + `all held-out ${all.accuracy.toFixed(3)} (${all.margins.length} pairs), ${r.steps} steps in ${(ms / 1000).toFixed(1)} s; evals ${JSON.stringify(r.evalAccuracy.map((e) => [e.step, +e.accuracy.toFixed(3)]))}`);
      assert.ok(after.accuracy > 0.75, `accuracy ${after.accuracy}`);
      assert.ok(after.accuracy > before.accuracy + 0.15, `untrained ${before.accuracy}, trained ${after.accuracy}`);
      assert.ok(after.loss < before.loss);
      assert.deepEqual(r.evalAccuracy.map((e) => e.step), [12, 24]);
      assert.deepEqual(r.evals.map((e) => e.evalLoss), r.evalAccuracy.map((e) => e.loss));
      assert.equal(r.trainAccuracy.length, 24);
      assert.ok(r.tokenize.dropped > 0 && r.tokenize.kept > 0, 'pairs over the context are left out');
      // Result curves feed the chart directly; rewardAccuracy's scores are per pair.
      rewardAccuracyChart(r.accuracyCurve);
      assert.equal(all.chosenScores.length, all.rejectedScores.length);
      assert.ok(Math.abs(all.margins[0] - (all.chosenScores[0] - all.rejectedScores[0])) < 1e-9);
    });

    it('with LoRA trains only the adapter and the head; the base stays bit-identical', async () => {
      const a = addLora(model, { r: 4, alpha: 8 });
      const base0 = host(model);
      const adapter0 = [...a.weights.values()].map((v) => v.dataSync().slice());
      const rows = prefs('train').filter((r) => r.source.startsWith('general/')).slice(0, 40);
      let head0: Float32Array | undefined;
      const r = await trainRewardModel(model, tok, rows, { lr: 1e-3, maxSteps: 2, batchSize: 3 }, {
        onTrainer: () => (head0 = model.adapterParams.get('heads.reward.weight')!.variable.dataSync().slice() as Float32Array),
      });
      assert.ok(maxAbsDiff(r.rewardModel.head.weight.dataSync(), head0!) > 0, 'head moved');
      const trained = [...model.trainableParams().keys()];
      assert.deepEqual(trained.filter((k) => !k.startsWith('adapters.default.')), ['heads.reward.weight', 'heads.reward.bias']);
      assert.equal(peft(model).activeNames.length, 1);
      for (const [k, v] of host(model)) assert.deepEqual(v, base0.get(k), `${k} changed`);
      const moved = [...a.weights.values()].some((v, i) => maxAbsDiff(v.dataSync(), adapter0[i]) > 0);
      assert.ok(moved, 'adapter weights moved');
      const mem = r.memory;
      assert.equal(mem.trainableParams, mem.adapterParams + mem.headParams);
      assert.ok(mem.adapterParams > 0 && mem.adapterBytes === 4 * mem.adapterParams);
    });
  });

  it('keeps the tensor count flat across steps, and the same seed gives the same losses', async () => {
    const { model: lm, tokenizer: tok } = await base('tiny-llama');
    lm.dispose();
    const rows = prefs('train').filter((r) => r.source === 'wordnet').slice(0, 24);
    const run = async () => {
      const model = CausalLM.create({ ...tiny, vocabSize: tok.vocabSize, contextLength: 64 }, { seed: 7 });
      const counts: number[] = [];
      const r = await trainRewardModel(model, tok, rows, { maxSteps: 6, batchSize: 4, evalRows: rows.slice(0, 6), evalEvery: 2, centerRewardsCoefficient: 0.01 }, {
        onTrainer: (t) => t.on('step', () => counts.push(tf.memory().numTensors)),
      });
      r.rewardModel.dispose();
      model.dispose();
      return { losses: r.history.map((h) => h.loss), acc: r.evalAccuracy, counts };
    };
    const start = tf.memory().numTensors;
    const a = await run();
    const mid = tf.memory().numTensors;
    const b = await run();
    // Each run leaves at most the head's 2 init tensors (ScalarHead does not free them; reported).
    assert.ok(mid - start <= 2 && tf.memory().numTensors - mid === mid - start, `tensors ${start} → ${mid} → ${tf.memory().numTensors}`);
    assert.deepEqual(a.losses, b.losses);
    assert.deepEqual(a.acc, b.acc);
    assert.ok(a.counts.slice(1).every((n) => n === a.counts[1]), `tensor counts ${a.counts}`);
    assert.equal(rewardDefaults.lr, 5e-4);
  });
});
