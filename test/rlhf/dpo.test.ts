import { strict as assert } from 'assert';
import * as tf from '@tensorflow/tfjs';
import { CausalLM, ModelConfig } from '../../src/model';
import { addLora } from '../../src/peft/lora';
import { base } from '../../src/lab/base';
import { dataset } from '../../src/lab/data';
import { tokenizeDefaults, tokenizePreferenceRow, type PreferenceRow } from '../../src/data/tokenize';
import type { Tokenizer } from '../../src/tokenizer/tokenizer';
import {
  DpoLossType, DpoMetrics, PairBatches, dpo, dpoDefaults, dpoLogProbs, dpoLoss, dpoMetricNames, referenceLogProbs, toDpoRewards, toPairPieces,
} from '../../src/rlhf/dpo';
import { checkGradients } from './preference-helpers';
import { engineReady } from '../helpers';

const LOG2 = Math.log(2);
const tiny: Partial<ModelConfig> = { family: 'llama', vocabSize: 32, dModel: 16, nLayers: 1, nHeads: 2, nKvHeads: 1, dFf: 32, contextLength: 16 };
const tokens = { pad: 0, eos: 1 };
const softplus = (x: number) => Math.max(x, 0) + Math.log1p(Math.exp(-Math.abs(x)));
const mean = (xs: number[]) => xs.reduce((s, x) => s + x, 0) / xs.length;
const round = (m: DpoMetrics) => Object.fromEntries(Object.entries(m).map(([k, v]) => [k, +v.toFixed(4)]));

/** Hand computation of TRL's DPO losses and metrics on plain numbers. */
function byHand(l: { pc: number[]; pr: number[]; rc: number[]; rr: number[]; nc: number[]; nr: number[] }, beta: number, type: DpoLossType, eps = 0) {
  const avg = (xs: number[], n: number[]) => (type === 'ipo' ? xs.map((x, i) => x / n[i]) : xs);
  const [pc, pr, rc, rr] = [avg(l.pc, l.nc), avg(l.pr, l.nr), avg(l.rc, l.nc), avg(l.rr, l.nr)];
  const cr = pc.map((x, i) => x - rc[i]);
  const rj = pr.map((x, i) => x - rr[i]);
  const d = cr.map((x, i) => x - rj[i]);
  const losses = d.map((x) => (type === 'sigmoid' ? (1 - eps) * softplus(-beta * x) + eps * softplus(beta * x) : type === 'hinge' ? Math.max(0, 1 - beta * x) : (x - 1 / (2 * beta)) ** 2));
  return {
    loss: mean(losses),
    'rewards/chosen': mean(cr.map((x) => beta * x)), 'rewards/rejected': mean(rj.map((x) => beta * x)),
    'rewards/accuracies': mean(cr.map((x, i) => (beta * x > beta * rj[i] ? 1 : 0))), 'rewards/margins': mean(d.map((x) => beta * x)),
    'logps/chosen': mean(pc), 'logps/rejected': mean(pr),
  };
}

/** A pair of hand-made examples: prompt (mask 0) then completion (mask 1). */
const pair = (prompt: number[], chosen: number[], rejected: number[]) => ({
  chosen: { ids: [...prompt, ...chosen], lossMask: [...prompt.map(() => 0), ...chosen.map(() => 1)] },
  rejected: { ids: [...prompt, ...rejected], lossMask: [...prompt.map(() => 0), ...rejected.map(() => 1)] },
});
const tinyPairs = [pair([2, 5, 7, 9], [3, 4, 6, 1], [8, 8, 1]), pair([4, 11, 12], [13, 14, 15, 16, 1], [17, 1])];

describe('rlhf/dpo', function () {
  this.timeout(600000);
  before(engineReady);

  describe('dpoLoss', () => {
    const l = { pc: [-10, -12, -8], pr: [-11, -9, -9.5], rc: [-10.5, -11, -8.2], rr: [-10.8, -9.5, -9], nc: [4, 6, 5], nr: [5, 3, 4] };
    const cases: [DpoLossType, number, number][] = [['sigmoid', 0.1, 0], ['sigmoid', 0.1, 0.2], ['sigmoid', 2, 0], ['hinge', 0.1, 0], ['hinge', 2, 0], ['ipo', 0.1, 0], ['ipo', 1, 0]];
    for (const [type, beta, eps] of cases) {
      it(`${type} β=${beta}${eps ? ` ε=${eps}` : ''} and its metrics equal a hand computation`, () => {
        const t = tf.tidy(() => {
          const v = (xs: number[]) => tf.tensor1d(xs);
          const r = dpoLoss({ policyChosen: v(l.pc), policyRejected: v(l.pr), refChosen: v(l.rc), refRejected: v(l.rr), chosenCount: v(l.nc), rejectedCount: v(l.nr) }, beta, type, eps);
          return tf.stack([r.loss, ...dpoMetricNames.map((k) => r.metrics[k])]).dataSync();
        });
        const want = byHand(l, beta, type, eps);
        (['loss', ...dpoMetricNames] as const).forEach((k, i) => assert.ok(Math.abs(t[i] - want[k]) < 1e-5 * Math.max(1, Math.abs(want[k])), `${k}: ${t[i]} vs ${want[k]}`));
      });
    }

    it('is log 2 (sigmoid), 1 (hinge), 1/(2β)² (ipo) when policy = reference; checks its options', () => {
      const z = () => tf.tensor1d([-3, -4]);
      const n = () => tf.tensor1d([2, 3]);
      const at = (type: DpoLossType, beta: number) => tf.tidy(() => dpoLoss({ policyChosen: z(), policyRejected: z(), refChosen: z(), refRejected: z(), chosenCount: n(), rejectedCount: n() }, beta, type).loss.dataSync()[0]);
      assert.ok(Math.abs(at('sigmoid', 0.1) - LOG2) < 1e-7);
      assert.equal(at('hinge', 0.1), 1);
      assert.ok(Math.abs(at('ipo', 0.1) - 25) < 1e-5);
      assert.throws(() => dpoLoss({ policyChosen: z(), policyRejected: z(), refChosen: z(), refRejected: z() }, 0.1, 'ipo'), /chosenCount/);
      assert.throws(() => dpoLoss({ policyChosen: z(), policyRejected: z(), refChosen: z(), refRejected: z() }, 0, 'sigmoid'), /beta/);
      assert.throws(() => dpoLoss({ policyChosen: z(), policyRejected: z(), refChosen: z(), refRejected: z() }, 0.1, 'hinge', 0.1), /labelSmoothing/);
    });
  });

  describe('on a tiny model', () => {
    let policy: CausalLM;
    let reference: CausalLM;
    beforeEach(() => {
      policy = CausalLM.create(tiny, { seed: 1 });
      reference = CausalLM.create(tiny, { seed: 2 }); // a different reference, so Δ ≠ 0 and every loss has a slope
    });
    afterEach(() => {
      policy.dispose();
      reference.dispose();
    });

    it('sums log-probs over completion tokens only (prompt and padding masked)', () => {
      const { pairs } = toPairPieces(tinyPairs, tokens, 16);
      const data = new PairBatches(pairs, tokens, 16, 2, referenceLogProbs(reference));
      const batch = data.batchOf([0, 1]);
      const got = tf.tidy(() => {
        const l = dpoLogProbs(policy, batch);
        return [l.policyChosen, l.policyRejected, l.chosenCount, l.rejectedCount].map((t) => Array.from(t.dataSync()));
      });
      // Manual: each sequence alone (no padding), log-softmax in JS, summed where the *target* is a completion token.
      const manual = (m: CausalLM, ex: { ids: number[]; lossMask: number[] }, all = false) => {
        const T = ex.ids.length - 1;
        const logits = tf.tidy(() => m.forward(tf.tensor2d([ex.ids.slice(0, T)], [1, T], 'int32')).dataSync());
        const V = tiny.vocabSize!;
        let s = 0;
        for (let t = 0; t < T; t++) {
          if (!all && ex.lossMask[t + 1] === 0) continue;
          const row = Array.from(logits.subarray(t * V, (t + 1) * V));
          const mx = Math.max(...row);
          s += row[ex.ids[t + 1]] - mx - Math.log(row.reduce((a, x) => a + Math.exp(x - mx), 0));
        }
        return s;
      };
      tinyPairs.forEach((p, i) => {
        assert.ok(Math.abs(got[0][i] - manual(policy, p.chosen)) < 1e-4, `chosen ${i}`);
        assert.ok(Math.abs(got[1][i] - manual(policy, p.rejected)) < 1e-4, `rejected ${i}`);
        assert.equal(got[2][i], p.chosen.lossMask.filter((x) => x).length);
        assert.equal(got[3][i], p.rejected.lossMask.filter((x) => x).length);
        // The prompt's tokens would change the sum if they counted.
        assert.ok(Math.abs(manual(policy, p.chosen, true) - got[0][i]) > 1e-2);
      });
      // Changing prompt tokens changes the context but the same completion positions are summed: the mask is unchanged.
      const mask = batch.lm.lossMask.arraySync();
      assert.deepEqual(mask[0].slice(0, 3), [0, 0, 0]);
      assert.deepEqual(mask[3], [0, 0, 1, 1, ...new Array(mask[3].length - 4).fill(0)]); // rejected of pair 2: targets 11, 12 | 17, EOS | padding
      tf.dispose([batch.lm.inputIds, batch.lm.targets, batch.lm.lossMask, batch.ref]);
    });

    for (const type of ['sigmoid', 'ipo', 'hinge'] as const) {
      it(`${type}: gradients w.r.t. model parameters match finite differences`, () => {
        const { pairs } = toPairPieces(tinyPairs, tokens, 16);
        const data = new PairBatches(pairs, tokens, 16, 2, referenceLogProbs(reference));
        const batch = data.batchOf([0, 1]);
        const beta = type === 'ipo' ? 0.5 : 1;
        const loss = () => dpoLoss(dpoLogProbs(policy, batch), beta, type).loss;
        checkGradients(policy, loss); // the two largest-gradient entries of three parameters, weights restored
        tf.dispose([batch.lm.inputIds, batch.lm.targets, batch.lm.lossMask, batch.ref]);
      });
    }
  });

  describe('dpo() with the shipped tokenizer on a small model', () => {
    let tok: Tokenizer;
    let rows: PreferenceRow[];
    let held: PreferenceRow[];
    const small: Partial<ModelConfig> = { family: 'llama', vocabSize: 2048, dModel: 16, nLayers: 1, nHeads: 2, nKvHeads: 1, dFf: 32, contextLength: 48 };
    const make = (lora: boolean) => {
      const m = CausalLM.create(small, { seed: 3 });
      if (lora) addLora(m, { r: 4 });
      return m;
    };
    const cfg = { maxSteps: 3, batchSize: 4, lr: 1e-2, seed: 7 };
    before(async () => {
      const b = await base('tiny-llama');
      tok = b.tokenizer;
      b.model.dispose();
      rows = (dataset('preferences', 'train') as unknown as PreferenceRow[]).slice(0, 48);
      held = (dataset('preferences', 'heldout') as unknown as PreferenceRow[]).slice(0, 12);
    });

    it('prompt tokens of a real row are masked; chosen and rejected share them', () => {
      const p = tokenizePreferenceRow(rows[1], tok, tokenizeDefaults)!;
      assert.deepEqual(p.chosen.ids.slice(0, p.chosen.promptLength), p.rejected.ids.slice(0, p.rejected.promptLength));
      assert.ok(p.chosen.lossMask.slice(0, p.chosen.promptLength).every((x) => x === 0));
      assert.ok(p.chosen.lossMask.slice(p.chosen.promptLength).every((x) => x === 1));
    });

    it('copy and adapter-disabled references: loss log 2 at step 0, identical runs; precomputed = per-step', async () => {
      const run = async (lora: boolean, config: Record<string, unknown>) => {
        const m = make(lora);
        const counts: number[] = [];
        const before = tf.memory().numTensors;
        const r = await dpo(m, tok, rows, { ...cfg, evalRows: held, ...config }, { onTrainer: (t) => t.on('step', () => counts.push(tf.memory().numTensors)) });
        const leaked = tf.memory().numTensors - before;
        m.dispose();
        return { r, counts, leaked };
      };
      const copy = await run(true, { reference: 'copy' });
      const disabled = await run(true, {}); // default with an adapter: adapter-disabled
      const pre = await run(true, { reference: 'copy', precomputeRefLogProbs: true });
      const full = await run(false, {}); // default without an adapter: a frozen copy
      console.log('      losses copy', copy.r.history.map((h) => h.loss.toFixed(6)).join(' '), '| precomputed', pre.r.history.map((h) => h.loss.toFixed(6)).join(' '));
      console.log(`      memory copy ${JSON.stringify(copy.r.memory)} adapter-disabled ${JSON.stringify(disabled.r.memory)}; pairs ${copy.r.data.train.pairs} of ${rows.length}`);
      assert.equal(copy.r.reference, 'copy');
      assert.equal(disabled.r.reference, 'adapter-disabled');
      assert.equal(full.r.reference, 'copy');
      for (const x of [copy, disabled, pre, full]) {
        assert.ok(Math.abs(x.r.history[0].loss - LOG2) < 1e-6, `step-0 loss ${x.r.history[0].loss}`);
        const e0 = x.r.evalMetrics[0];
        assert.equal(e0.step, 0);
        assert.ok(Math.abs(e0.loss - LOG2) < 1e-6 && e0['rewards/margins'] === 0 && e0['rewards/accuracies'] === 0);
        assert.deepEqual(x.r.evalMetrics.map((e) => e.step), [0, 3]);
        assert.equal(x.r.metrics.length, 3);
        assert.ok(x.counts.every((c) => c === x.counts[0]), `tensor count per step ${x.counts}`);
        assert.equal(x.leaked, 0);
      }
      assert.deepEqual(disabled.r.history.map((h) => h.loss), copy.r.history.map((h) => h.loss));
      assert.deepEqual(disabled.r.evalMetrics, copy.r.evalMetrics);
      pre.r.history.forEach((h, i) => assert.ok(Math.abs(h.loss - copy.r.history[i].loss) < 1e-5, `step ${i + 1}: ${h.loss} vs ${copy.r.history[i].loss}`));
      assert.ok(copy.r.history[2].loss !== copy.r.history[0].loss);
      // Memory: the copy holds a second base model; adapter-disabled holds nothing; precomputing frees the copy.
      const loraBytes = 4 * (16 * 4 + 4 * 16 + 16 * 4 + 4 * 8); // q_proj and v_proj A, B at r = 4
      const cm = copy.r.memory;
      assert.ok(cm.referenceBytes >= cm.policyBytes - loraBytes && cm.referenceBytes < cm.policyBytes + 50000, `reference ${cm.referenceBytes} B, policy ${cm.policyBytes} B`);
      assert.equal(disabled.r.memory.referenceBytes, 0);
      assert.ok(pre.r.memory.referenceFreed && pre.r.memory.refTableBytes === 8 * (pre.r.data.train.pairs + pre.r.data.eval!.pairs));
      // Metrics line up with dpoChart's input.
      const rw = toDpoRewards(copy.r.metrics);
      assert.deepEqual(rw.step, [1, 2, 3]);
      assert.deepEqual(copy.r.rewards, rw);
      assert.equal(copy.r.evalRewards.margin![0], 0);
    });

    it('same seed → same losses; ipo and hinge start at 1/(2β)² and 1; rejects a reference it cannot build', async () => {
      const a = make(false);
      const b = make(false);
      const ra = await dpo(a, tok, rows, { ...cfg, evalOnStart: false });
      const rb = await dpo(b, tok, rows, { ...cfg, evalOnStart: false });
      assert.deepEqual(ra.history.map((h) => h.loss), rb.history.map((h) => h.loss));
      assert.deepEqual(ra.metrics, rb.metrics);
      a.dispose();
      b.dispose();
      for (const [lossType, want] of [['ipo', 25], ['hinge', 1]] as const) {
        const m = make(false);
        const r = await dpo(m, tok, rows, { ...cfg, maxSteps: 1, lossType, evalOnStart: false });
        assert.ok(Math.abs(r.history[0].loss - want) < 1e-4, `${lossType}: ${r.history[0].loss}`);
        m.dispose();
      }
      const m = make(false);
      await assert.rejects(dpo(m, tok, rows, { ...cfg, reference: 'adapter-disabled' }), /adapter/);
      await assert.rejects(dpo(m, tok, rows, { ...cfg, lossType: 'ipo', labelSmoothing: 0.1 }), /labelSmoothing/);
      m.dispose();
    });
  });

  it('on the shipped base: a short run raises held-out reward accuracy and margin', async () => {
    const { model, tokenizer } = await base('tiny-llama');
    const train = (dataset('preferences', 'train') as unknown as PreferenceRow[]).slice(0, 400);
    const held = (dataset('preferences', 'heldout') as unknown as PreferenceRow[]).slice(0, 32);
    const counts: number[] = [];
    const t0 = Date.now();
    const r = await dpo(model, tokenizer, train, { maxSteps: 12, batchSize: 4, evalRows: held }, { onTrainer: (t) => t.on('step', () => counts.push(tf.memory().numTensors)) });
    const [first, last] = [r.evalMetrics[0], r.evalMetrics.at(-1)!];
    console.log(`      ${Date.now() - t0} ms, lr ${dpoDefaults.lr}\n      step 0: ${JSON.stringify(round(first))}\n      step ${last.step}: ${JSON.stringify(round(last))}`);
    console.log(`      train loss ${r.metrics.map((m) => m.loss.toFixed(4)).join(' ')}\n      memory ${JSON.stringify(r.memory)}`);
    assert.equal(last.step, 12);
    assert.ok(last['rewards/accuracies'] > first['rewards/accuracies'] && last['rewards/accuracies'] > 0.5);
    assert.ok(last['rewards/margins'] > first['rewards/margins'] && last['rewards/margins'] > 0);
    assert.ok(last.loss < first.loss);
    assert.ok(counts.every((c) => c === counts[0]), `tensor count per step ${counts}`);
    model.dispose();
  });
});
