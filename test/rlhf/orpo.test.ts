import { strict as assert } from 'assert';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import * as tf from '@tensorflow/tfjs';
import { CausalLM } from '../../src/model';
import { dataset } from '../../src/lab/data';
import { lab } from '../../src/lab/lab';
import { PairBatches, dpoLogProbs, toPairPieces } from '../../src/rlhf/dpo';
import { orpo, orpoDefaults, orpoLoss, orpoMetricNames } from '../../src/rlhf/orpo';
import { engineReady } from '../helpers';
import { assertClose, checkGradients, describeSeededPairRuns, loggedRecords, mean, preferenceRows, shippedRun, softplus, tiny, tinyPairs, tokens } from './preference-helpers';

/** ORPO by hand: NLL of chosen tokens − λ·mean log σ(log odds_c − log odds_r), odds from mean log-probs. */
function byHand(l: { pc: number[]; pr: number[]; nc: number[]; nr: number[] }, beta: number) {
  const ac = l.pc.map((x, i) => x / l.nc[i]);
  const ar = l.pr.map((x, i) => x / l.nr[i]);
  const odds = (a: number) => a - Math.log(1 - Math.exp(a));
  const ratio = ac.map((a, i) => odds(a) - odds(ar[i]));
  const logSig = ratio.map((x) => -softplus(-x));
  const nll = -l.pc.reduce((s, x) => s + x, 0) / l.nc.reduce((s, x) => s + x, 0);
  const rc = ac.map((x) => beta * x);
  const rr = ar.map((x) => beta * x);
  return {
    loss: nll - beta * mean(logSig),
    'rewards/chosen': mean(rc), 'rewards/rejected': mean(rr), 'rewards/accuracies': mean(rc.map((x, i) => (x > rr[i] ? 1 : 0))),
    'rewards/margins': mean(rc.map((x, i) => x - rr[i])), 'logps/chosen': mean(ac), 'logps/rejected': mean(ar),
    nll_loss: nll, log_odds_ratio: mean(logSig), log_odds_chosen: mean(ratio),
  };
}

describe('rlhf/orpo', function () {
  this.timeout(600000);
  before(engineReady);

  it('defaults: TRL ORPOConfig β (λ) 0.1', () => assert.equal(orpoDefaults.beta, 0.1));

  // Mean log-probs near 0 (−0.3) exercise log(1 − exp(a)) where it is far from −a.
  const cases = [{ pc: [-10, -12, -8], pr: [-11, -9, -9.5], nc: [4, 6, 5], nr: [5, 3, 4] }, { pc: [-0.6, -3], pr: [-0.9, -2], nc: [2, 3], nr: [3, 4] }];
  for (const beta of [0.1, 1]) {
    cases.forEach((l, c) => {
      it(`orpoLoss β=${beta} (case ${c + 1}) and its metrics equal a hand computation`, () => {
        const got = tf.tidy(() => {
          const v = (xs: number[]) => tf.tensor1d(xs);
          const r = orpoLoss({ policyChosen: v(l.pc), policyRejected: v(l.pr), chosenCount: v(l.nc), rejectedCount: v(l.nr) }, beta);
          const names = Object.keys(r.metrics) as (keyof typeof r.metrics)[];
          const vals = tf.stack([r.loss, ...names.map((k) => r.metrics[k])]).dataSync();
          return Object.fromEntries(['loss', ...names].map((k, i) => [k, vals[i]]));
        });
        assertClose(got, byHand(l, beta));
      });
    });
  }

  it('β = 0 is plain SFT on the chosen completions; a negative β is refused', () => {
    const v = (xs: number[]) => tf.tensor1d(xs);
    const loss = tf.tidy(() => orpoLoss({ policyChosen: v([-4, -6]), policyRejected: v([-1, -1]), chosenCount: v([2, 3]), rejectedCount: v([1, 1]) }, 0).loss.dataSync()[0]);
    assert.ok(Math.abs(loss - 2) < 1e-6);
    assert.throws(() => orpoLoss({ policyChosen: v([-1]), policyRejected: v([-1]), chosenCount: v([1]), rejectedCount: v([1]) }, -0.1), /beta/);
  });

  it('gradients w.r.t. model parameters match finite differences', () => {
    const policy = CausalLM.create(tiny, { seed: 1 });
    const { pairs } = toPairPieces(tinyPairs, tokens, 16);
    const batch = new PairBatches(pairs, tokens, 16, 2, null).batchOf([0, 1]);
    checkGradients(policy, () => orpoLoss(dpoLogProbs(policy, batch), 1).loss);
    tf.dispose([batch.lm.inputIds, batch.lm.targets, batch.lm.lossMask, batch.ref]);
    policy.dispose();
  });

  describeSeededPairRuns('orpo', orpo, orpoMetricNames);

  it('on the shipped base: a short run lowers the loss and the NLL and raises the held-out log odds ratio', async () => {
    const { first, last } = await shippedRun((model, tokenizer) => orpo(model, tokenizer, preferenceRows('train', 400), { maxSteps: 12, batchSize: 4, evalRows: preferenceRows('heldout', 32) }));
    assert.equal(last.step, 12);
    assert.ok(last.loss < first.loss && last.nll_loss < first.nll_loss);
    assert.ok(last.log_odds_chosen > first.log_odds_chosen && last.log_odds_ratio > first.log_odds_ratio);
  });

  it('.orpo() runs from the lab builder and logs its metrics', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tunelab-orpo-'));
    const prefs = dataset('preferences').slice(0, 16);
    const run = await lab.base('tiny-llama').log(dir).show(false).data(prefs).eval(prefs.slice(0, 4)).orpo({ maxSteps: 2, batchSize: 4 });
    assert.equal(run.record.method, 'orpo');
    assert.equal(run.result.metrics.length, 2);
    const { steps, evals } = loggedRecords(dir, run.record.run);
    assert.ok(Number.isFinite(steps[0].log_odds_ratio) && Number.isFinite(steps[0].nll_loss), JSON.stringify(steps[0]));
    assert.ok(Number.isFinite(evals.at(-1)!.log_odds_chosen), JSON.stringify(evals.at(-1)));
    run.model.dispose();
    fs.rmSync(dir, { recursive: true, force: true });
  });
});
