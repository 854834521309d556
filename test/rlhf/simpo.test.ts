import { strict as assert } from 'assert';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import * as tf from '@tensorflow/tfjs';
import { CausalLM } from '../../src/model';
import { dataset } from '../../src/lab/data';
import { lab } from '../../src/lab/lab';
import { PairBatches, dpoLogProbs, toPairPieces } from '../../src/rlhf/dpo';
import { simpo, simpoDefaults, simpoLoss, simpoMetricNames } from '../../src/rlhf/simpo';
import { engineReady } from '../helpers';
import { assertClose, checkGradients, describeSeededPairRuns, loggedRecords, mean, preferenceRows, shippedRun, softplus, tiny, tinyPairs, tokens } from './preference-helpers';

/** SimPO by hand: rewards β·(sum/count), loss mean softplus(−(r_c − r_r − γ)) + α·NLL over chosen tokens. */
function byHand(l: { pc: number[]; pr: number[]; nc: number[]; nr: number[] }, beta: number, gamma: number, alpha: number) {
  const ac = l.pc.map((x, i) => x / l.nc[i]);
  const ar = l.pr.map((x, i) => x / l.nr[i]);
  const rc = ac.map((x) => beta * x);
  const rr = ar.map((x) => beta * x);
  const nll = -l.pc.reduce((s, x) => s + x, 0) / l.nc.reduce((s, x) => s + x, 0);
  return {
    loss: mean(rc.map((x, i) => softplus(-(x - rr[i] - gamma)))) + alpha * nll,
    'rewards/chosen': mean(rc), 'rewards/rejected': mean(rr), 'rewards/accuracies': mean(rc.map((x, i) => (x > rr[i] ? 1 : 0))),
    'rewards/margins': mean(rc.map((x, i) => x - rr[i])), 'logps/chosen': mean(ac), 'logps/rejected': mean(ar), nll_loss: nll,
  };
}

describe('rlhf/simpo', function () {
  this.timeout(600000);
  before(engineReady);

  it('defaults: β 2.0 (paper), γ 0.5 (TRL simpo_gamma), cpoAlpha 0 (TRL SimPO)', () => {
    assert.deepEqual([simpoDefaults.beta, simpoDefaults.gamma, simpoDefaults.cpoAlpha], [2, 0.5, 0]);
  });

  for (const [beta, gamma, alpha] of [[2, 0.5, 0], [2.5, 1.2, 0], [0.1, 0.5, 1]] as const) {
    it(`simpoLoss β=${beta} γ=${gamma} α=${alpha} and its metrics equal a hand computation`, () => {
      const l = { pc: [-10, -12, -8], pr: [-11, -9, -9.5], nc: [4, 6, 5], nr: [5, 3, 4] };
      const got = tf.tidy(() => {
        const v = (xs: number[]) => tf.tensor1d(xs);
        const r = simpoLoss({ policyChosen: v(l.pc), policyRejected: v(l.pr), chosenCount: v(l.nc), rejectedCount: v(l.nr) }, beta, gamma, alpha);
        const names = Object.keys(r.metrics) as (keyof typeof r.metrics)[];
        const vals = tf.stack([r.loss, ...names.map((k) => r.metrics[k])]).dataSync();
        return Object.fromEntries(['loss', ...names].map((k, i) => [k, vals[i]]));
      });
      assertClose(got, byHand(l, beta, gamma, alpha));
    });
  }

  it('rejects bad options', () => {
    const z = () => tf.tensor1d([-3]);
    assert.throws(() => simpoLoss({ policyChosen: z(), policyRejected: z(), chosenCount: z(), rejectedCount: z() }, 0), /beta/);
    assert.throws(() => simpoLoss({ policyChosen: z(), policyRejected: z(), chosenCount: z(), rejectedCount: z() }, 2, 0.5, -1), /cpoAlpha/);
  });

  it('gradients w.r.t. model parameters match finite differences (with the NLL term)', () => {
    const policy = CausalLM.create(tiny, { seed: 1 });
    const { pairs } = toPairPieces(tinyPairs, tokens, 16);
    const batch = new PairBatches(pairs, tokens, 16, 2, null).batchOf([0, 1]);
    assert.deepEqual(Array.from(batch.ref.dataSync()), [0, 0, 0, 0]); // reference-free: no reference forward
    checkGradients(policy, () => simpoLoss(dpoLogProbs(policy, batch), 2, 0.5, 0.5).loss);
    tf.dispose([batch.lm.inputIds, batch.lm.targets, batch.lm.lossMask, batch.ref]);
    policy.dispose();
  });

  describeSeededPairRuns('simpo', simpo, simpoMetricNames);

  it('on the shipped base: a short run lowers the loss and raises held-out reward accuracy and margin', async () => {
    const { first, last } = await shippedRun((model, tokenizer) => simpo(model, tokenizer, preferenceRows('train', 400), { maxSteps: 12, batchSize: 4, evalRows: preferenceRows('heldout', 32) }));
    assert.equal(last.step, 12);
    assert.ok(last.loss < first.loss);
    assert.ok(last['rewards/margins'] > first['rewards/margins'] && last['rewards/accuracies'] >= first['rewards/accuracies']);
  });

  it('.simpo() runs from the lab builder and logs its metrics', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tunelab-simpo-'));
    const prefs = dataset('preferences').slice(0, 16);
    const run = await lab.base('tiny-llama').log(dir).show(false).data(prefs).eval(prefs.slice(0, 4)).simpo({ maxSteps: 2, batchSize: 4 });
    assert.equal(run.record.method, 'simpo');
    assert.equal(run.result.metrics.length, 2);
    assert.ok(Number.isFinite(run.result.evalMetrics.at(-1)!['rewards/margins']));
    const { steps, evals } = loggedRecords(dir, run.record.run);
    assert.ok(Number.isFinite(steps[0]['rewards/chosen']) && Number.isFinite(steps[0].nll_loss), JSON.stringify(steps[0]));
    assert.ok(Number.isFinite(evals.at(-1)!['rewards/margins']), JSON.stringify(evals.at(-1)));
    run.model.dispose();
    fs.rmSync(dir, { recursive: true, force: true });
  });
});
