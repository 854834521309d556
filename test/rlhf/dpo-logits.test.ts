import { strict as assert } from 'assert';
import * as tf from '@tensorflow/tfjs';
import { CausalLM, modelConfig } from '../../src/model';
import { PairBatches, dpoLogProbs, dpoObjective, evaluateDpo, referenceLogProbs, toPairPieces } from '../../src/rlhf/dpo';
import { engineReady } from '../helpers';

const tokens = { pad: 0, eos: 1 };
const pair = (prompt: number[], chosen: number[], rejected: number[]) => ({
  chosen: { ids: [...prompt, ...chosen], lossMask: [...prompt.map(() => 0), ...chosen.map(() => 1)] },
  rejected: { ids: [...prompt, ...rejected], lossMask: [...prompt.map(() => 0), ...rejected.map(() => 1)] },
});

describe('rlhf/dpo logits/chosen, logits/rejected (TRL)', function () {
  this.timeout(60000);
  before(engineReady);

  it('are the mean policy logit over completion tokens × vocabulary of each half, as a hand computation', () => {
    const V = 24;
    const policy = new CausalLM(modelConfig({ family: 'llama', vocabSize: V, dModel: 16, nLayers: 1, nHeads: 2, nKvHeads: 1, dFf: 32, contextLength: 16 }), { seed: 3 });
    const reference = policy.clone();
    const raw = [pair([2, 5, 7], [3, 4, 6, 1], [8, 1]), pair([4, 11], [13, 14, 1], [17, 9, 9, 1])];
    const { pairs } = toPairPieces(raw, tokens, 16);
    const data = new PairBatches(pairs, tokens, 16, 2, referenceLogProbs(reference));
    const batch = data.batchOf([0, 1]);
    const got = tf.tidy(() => {
      const l = dpoLogProbs(policy, batch, { logits: true });
      return [l['logits/chosen']!.dataSync()[0], l['logits/rejected']!.dataSync()[0]];
    });
    // By hand: each sequence alone, logits at positions whose target is a completion token, all V entries.
    const byHand = (side: 'chosen' | 'rejected') => {
      let sum = 0;
      let n = 0;
      for (const p of raw) {
        const ex = p[side];
        const T = ex.ids.length - 1;
        const logits = tf.tidy(() => policy.forward(tf.tensor2d([ex.ids.slice(0, T)], [1, T], 'int32')).dataSync());
        for (let t = 0; t < T; t++) {
          if (!ex.lossMask[t + 1]) continue;
          for (let v = 0; v < V; v++) sum += logits[t * V + v];
          n += V;
        }
      }
      return sum / n;
    };
    assert.ok(Math.abs(got[0] - byHand('chosen')) < 1e-5, `chosen ${got[0]} vs ${byHand('chosen')}`);
    assert.ok(Math.abs(got[1] - byHand('rejected')) < 1e-5, `rejected ${got[1]} vs ${byHand('rejected')}`);
    const plain = dpoLogProbs(policy, batch);
    assert.ok(!('logits/chosen' in plain), 'only when asked');
    tf.dispose(Object.values(plain));

    // The objective's step metrics and evaluateDpo carry them, with no tensor left behind.
    const objective = dpoObjective();
    const before = tf.memory().numTensors;
    tf.tidy(() => { objective.loss(policy, batch, { training: false, seed: 1 }); }); // as inside variableGrads
    const m = objective.takeMetrics()!;
    assert.equal(tf.memory().numTensors, before);
    assert.ok(Math.abs(m['logits/chosen'] - got[0]) < 1e-5 && Math.abs(m['logits/rejected'] - got[1]) < 1e-5);
    const e = evaluateDpo(policy, data);
    assert.ok(Math.abs(e['logits/chosen'] - got[0]) < 1e-5, 'one batch: the same mean');
    tf.dispose([batch.lm.inputIds, batch.lm.targets, batch.lm.lossMask, batch.ref]);
    policy.dispose();
    reference.dispose();
  });
});
