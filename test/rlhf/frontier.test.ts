import { strict as assert } from 'assert';
import * as tf from '@tensorflow/tfjs';
import { engineReady } from '../helpers';
import { CausalLM } from '../../src/model/transformer';
import { base } from '../../src/lab/base';
import { addLora } from '../../src/peft/lora';
import { policyRewardKl, sequenceKl, frontierRun } from '../../src/rlhf/frontier';
import { sentimentScore, sentimentPrompts } from '../../src/rlhf/sentiment';
import type { Tokenizer } from '../../src/tokenizer/tokenizer';
import { Rng } from '../../src/util/rng';

const close = (a: number, b: number, tol: number, what = '') => assert.ok(Math.abs(a - b) <= tol, `${what} ${a} ≉ ${b}`);
const reward = (_p: string, r: string) => sentimentScore(r);

/** Adds uniform noise of standard deviation `std` to every variable of `vars` (a policy that differs from its reference). */
function perturb(vars: Iterable<{ variable: tf.Variable }>, std: number, seed: number): void {
  const rng = new Rng(seed);
  for (const { variable: v } of vars) {
    const vals = Float32Array.from(v.dataSync(), (x) => x + std * Math.sqrt(3) * (2 * rng.next() - 1));
    tf.tidy(() => v.assign(tf.tensor(vals, v.shape)));
  }
}

/** Σ_t log softmax(logits / T)[y_t] by hand: one unbatched forward per row, log-softmax on the host in float64. */
function handLogProb(model: CausalLM, prompt: number[], response: number[], temperature: number): number {
  const seq = [...prompt, ...response];
  const logits = tf.tidy(() => model.forward(tf.tensor2d([seq.slice(0, -1)], [1, seq.length - 1], 'int32')));
  const l = logits.dataSync();
  logits.dispose();
  const vocab = model.config.vocabSize;
  let total = 0;
  response.forEach((tok, j) => {
    const row = l.subarray((prompt.length - 1 + j) * vocab, (prompt.length + j) * vocab);
    let max = -Infinity;
    for (const x of row) max = Math.max(max, x / temperature);
    let z = 0;
    for (const x of row) z += Math.exp(x / temperature - max);
    total += row[tok] / temperature - max - Math.log(z);
  });
  return total;
}

describe('rlhf/frontier', function () {
  let tok: Tokenizer;
  let ref: CausalLM;
  const prompts = sentimentPrompts(6, 11);
  before(async () => {
    await engineReady();
    ({ model: ref, tokenizer: tok } = await base('tiny-llama'));
  });
  after(() => ref?.dispose());

  it('KL of a policy against an identical copy is exactly 0; reward is the mean over the returned samples', async () => {
    const copy = ref.clone();
    try {
      const pt = await policyRewardKl(ref, copy, tok, prompts, reward, { samplesPerPrompt: 3, responseLength: 8, seed: 4 });
      assert.equal(pt.samples.length, prompts.length * 3);
      for (const s of pt.samples) assert.equal(s.kl, 0);
      assert.equal(pt.kl, 0);
      assert.equal(pt.klStderr, 0);
      const rewards = pt.samples.map((s) => reward(s.prompt, s.response));
      close(pt.reward, rewards.reduce((a, b) => a + b, 0) / rewards.length, 1e-12, 'reward');
      pt.samples.forEach((s, i) => assert.equal(s.prompt, prompts[Math.floor(i / 3)]));
    } finally {
      copy.dispose();
    }
  });

  it('matches a hand computation (forward + log-softmax) on a tiny model, for fixed and for sampled responses', async () => {
    const a = CausalLM.create({ family: 'llama', vocabSize: tok.vocabSize, dModel: 16, nLayers: 1, nHeads: 2, nKvHeads: 1, dFf: 32, contextLength: 48 }, { seed: 5 });
    const b = a.clone();
    perturb(b.params.values(), 0.05, 1);
    try {
      // Fixed responses of different lengths and prompts of different lengths: padding must not leak.
      const p = [tok.encode('The nation is'), tok.encode('We must work together for the'), tok.encode('In the beginning')];
      const r = [[400, 401, 402], [17], [900, 5, 77, 1200, 31]];
      for (const t of [1, 0.7]) {
        const got = sequenceKl(a, b, p, r, t);
        p.forEach((pi, i) => {
          const lp = handLogProb(a, pi, r[i], t);
          const lr = handLogProb(b, pi, r[i], t);
          close(got.logprob[i], lp, 2e-4, `logprob[${i}] T=${t}`);
          close(got.refLogprob[i], lr, 2e-4, `refLogprob[${i}] T=${t}`);
          close(got.kl[i], lp - lr, 2e-4, `kl[${i}] T=${t}`);
        });
      }
      // Sampled: each returned sample's numbers equal the hand computation on its own responseIds.
      const pt = await policyRewardKl(a, b, tok, prompts.slice(0, 3), reward, { samplesPerPrompt: 2, responseLength: 6, seed: 2, stopToken: null });
      for (const s of pt.samples) {
        assert.equal(s.responseIds.length, 6);
        const ids = tok.encode(s.prompt);
        close(s.kl, handLogProb(a, ids, s.responseIds, 0.7) - handLogProb(b, ids, s.responseIds, 0.7), 2e-4, 'sampled kl');
      }
      close(pt.kl, pt.samples.reduce((x, s) => x + s.kl, 0) / pt.samples.length, 1e-9, 'mean kl');
    } finally {
      a.dispose();
      b.dispose();
    }
  });

  it("KL ≥ 0 in expectation for a moved policy; 'adapter-disabled' equals a copy of the base; deterministic for a seed", async () => {
    const policy = ref.clone();
    addLora(policy, { r: 4 });
    const base0 = ref.clone();
    try {
      // LoRA's B starts at 0: the adapter changes nothing, so the KL to its own base is exactly 0.
      const zero = await policyRewardKl(policy, 'adapter-disabled', tok, prompts.slice(0, 2), reward, { samplesPerPrompt: 2, responseLength: 6 });
      assert.equal(zero.kl, 0);
      perturb([...policy.adapterParams.entries()].filter(([k]) => k.includes('lora_B')).map(([, p]) => p), 0.3, 7);
      const opts = { samplesPerPrompt: 8, responseLength: 12, seed: 3 };
      const off = await policyRewardKl(policy, 'adapter-disabled', tok, prompts, reward, opts);
      const copy = await policyRewardKl(policy, base0, tok, prompts, reward, opts);
      console.log(`      moved policy: KL ${off.kl.toFixed(3)} ± ${off.klStderr.toFixed(3)} over ${off.samples.length} samples; reward ${off.reward.toFixed(3)}`);
      // Expectation of a KL is ≥ 0; here the policy moved enough for the mean to clear 2 standard errors.
      assert.ok(off.kl > 2 * off.klStderr && off.kl > 0.05, `KL ${off.kl} ± ${off.klStderr}`);
      assert.deepEqual(copy.samples.map((s) => s.responseIds), off.samples.map((s) => s.responseIds));
      off.samples.forEach((s, i) => close(copy.samples[i].kl, s.kl, 1e-4, `adapter-disabled vs copy [${i}]`));
      const again = await policyRewardKl(policy, 'adapter-disabled', tok, prompts, reward, opts);
      assert.deepEqual(again, off);
      const other = await policyRewardKl(policy, 'adapter-disabled', tok, prompts, reward, { ...opts, seed: 4 });
      assert.notDeepEqual(other.samples.map((s) => s.responseIds), off.samples.map((s) => s.responseIds));
      assert.deepEqual(frontierRun('x', [off, { ...copy, step: 5 }]), { name: 'x', reward: [off.reward, copy.reward], kl: [off.kl, copy.kl], step: [0, 5] });
      await assert.rejects(policyRewardKl(ref, 'adapter-disabled', tok, prompts, reward), /adapter/);
    } finally {
      policy.dispose();
      base0.dispose();
    }
  });
});
