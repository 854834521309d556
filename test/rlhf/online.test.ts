import { strict as assert } from 'assert';
import * as tf from '@tensorflow/tfjs';
import { AdamW } from '../../src/train/optimizer';
import { Rng } from '../../src/util/rng';
import { clippedUpdate, PromptCycle, rolloutSeeds } from '../../src/rlhf/online';
import { engineReady } from '../helpers';

describe('rlhf/online', () => {
  before(engineReady);

  it('PromptCycle: every prompt once per round, reshuffled each round, same seed → same order', () => {
    const order = new PromptCycle(5, new Rng(3)).next(15);
    for (let round = 0; round < 3; round++) assert.deepEqual([...order.slice(5 * round, 5 * round + 5)].sort(), [0, 1, 2, 3, 4], `round ${round}`);
    assert.ok(order.slice(0, 5).join() !== order.slice(5, 10).join() || order.slice(5, 10).join() !== order.slice(10).join(), 'never reshuffled');
    const again = new PromptCycle(5, new Rng(3));
    assert.deepEqual([...again.next(4), ...again.next(11)], order); // calls of any size continue the same sequence
  });

  it('rolloutSeeds: one per row, fixed by (seed, step), different rows and steps differ', () => {
    const s = rolloutSeeds(7, 2, 4);
    assert.equal(s.length, 4);
    assert.equal(new Set([...s, ...rolloutSeeds(7, 3, 4)]).size, 8);
    assert.deepEqual(rolloutSeeds(7, 2, 4), s);
  });

  it('clippedUpdate: returns the pre-clip norm and steps; a NaN norm throws naming the method and step, weights untouched; gradients freed', async () => {
    const w = tf.variable(tf.tensor1d([1, 1]), true, 'online-test-w');
    const params = new Map([['w', w]]);
    const opt = new AdamW(params, { weightDecay: 0 });
    try {
      const before = tf.memory().numTensors;
      const norm = await clippedUpdate(opt, params, { [w.name]: tf.tensor1d([3, 4]) }, { lr: 0.1, maxGradNorm: 1, what: 'ppo', step: 1 });
      assert.ok(Math.abs(norm - 5) < 1e-5, `norm ${norm}`);
      // AdamW's first step moves each weight by ≈ lr against its gradient's sign, whatever the clip factor.
      w.dataSync().forEach((x) => assert.ok(Math.abs(x - 0.9) < 1e-4, `weight ${x}`));
      assert.equal(tf.memory().numTensors, before);
      const was = Array.from(w.dataSync());
      await assert.rejects(clippedUpdate(opt, params, { [w.name]: tf.tensor1d([NaN, 1]) }, { lr: 0.1, maxGradNorm: 1, what: 'grpo', step: 3 }), /^Error: grpo: gradient norm is NaN at step 3/);
      assert.deepEqual(Array.from(w.dataSync()), was);
      assert.equal(tf.memory().numTensors, before);
    } finally {
      opt.dispose();
      w.dispose();
    }
  });
});
