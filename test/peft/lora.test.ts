import { strict as assert } from 'assert';
import * as tf from '@tensorflow/tfjs';
import { CausalLM, generate } from '../../src/model';
import { Trainer } from '../../src/train/trainer';
import { TokenWindows, causalLmObjective } from '../../src/train/causal-lm';
import { adapterSize, peft } from '../../src/peft/peft';
import { LoraAdapter, addLora, addWeightedLora, loraDefaults, mergeAndUnload, mergeLora, unmergeLora } from '../../src/peft/lora';
import { baseWeights, logitsOf, stream, tinyFamilies } from './fixtures';
import { engineReady, maxAbsDiff } from '../helpers';

const { llama, gpt2 } = tinyFamilies();
const rows = [[1, 5, 9, 2, 7, 3, 11, 4], [8, 6, 4, 2, 0, 1, 3, 5]];
const logits = (m: CausalLM, opts = {}) => logitsOf(m, rows, opts);
const host = baseWeights;
/** Sets every lora_B of an adapter to seeded noise, so the adapter changes the outputs. */
function perturb(a: LoraAdapter, seed: number, std = 0.05): void {
  for (const [k, v] of a.weights) if (k.endsWith('lora_B') || k.endsWith('bias_delta')) v.assign(tf.randomNormal(v.shape, 0, std, 'float32', seed++));
}

describe('peft/lora', () => {
  before(engineReady);

  it('has PEFT defaults', () => {
    assert.deepEqual({ ...loraDefaults, targetModules: [...loraDefaults.targetModules as string[]] },
      { r: 8, alpha: 8, dropout: 0, targetModules: ['q_proj', 'v_proj'], useRslora: false, bias: 'none', initLoraWeights: true, seed: 0, useDora: false });
    assert.ok(Object.isFrozen(loraDefaults));
  });

  for (const fam of [llama, gpt2]) {
    describe(fam.family!, () => {
      let m: CausalLM;
      beforeEach(() => { m = CausalLM.create(fam, { seed: 1 }); });
      afterEach(() => m.dispose());

      it('starts as a no-op (bit-identical logits), changes logits once B moves', () => {
        const base = logits(m);
        const a = addLora(m, { r: 4, targetModules: 'all-linear', bias: fam.family === 'gpt2' ? 'all' : 'none' });
        assert.deepEqual(logits(m), base);
        perturb(a, 3);
        assert.ok(maxAbsDiff(logits(m), base) > 1e-3);
      });

      it('merge equals the adapter; unmerge restores the base', () => {
        const before = host(m);
        const a = addLora(m, { r: 4, alpha: 16, targetModules: ['q_proj', 'v_proj', 'down_proj'], bias: fam.family === 'gpt2' ? 'lora_only' : 'none' });
        perturb(a, 7);
        const withAdapter = logits(m);
        mergeLora(m);
        assert.equal(a.merged, true);
        assert.equal(m.hooks.linear.size, 0, 'no hook while merged');
        assert.ok(maxAbsDiff(logits(m), withAdapter) < 1e-5);
        assert.ok(maxAbsDiff(m.weight('layers.0.attn.q_proj.weight').dataSync(), before.get('layers.0.attn.q_proj.weight')!) > 1e-4);
        unmergeLora(m);
        for (const [k, v] of host(m)) assert.ok(maxAbsDiff(v, before.get(k)!) < 1e-6, k);
        assert.ok(maxAbsDiff(logits(m), withAdapter) < 1e-5);
        assert.equal(a.merged, false);
      });

      it('trains only the adapter: loss falls, the base stays bit-identical, tensor count stays flat', async function () {
        const before = host(m);
        const a = addLora(m, { r: 4, alpha: 8, targetModules: 'all-linear', dropout: 0.1, bias: fam.family === 'gpt2' ? 'all' : 'none' });
        const trainable = [...m.trainableParams().keys()];
        assert.deepEqual(trainable, [...a.weights.keys()].map((k) => `adapters.default.${k}`));
        const t = new Trainer(m, causalLmObjective, new TokenWindows(stream(2000), 16, 8, 3), { lr: 1e-2, maxSteps: 12 });
        const counts: number[] = [];
        t.on('step', () => counts.push(tf.memory().numTensors));
        const r = await t.train();
        t.dispose();
        const losses = r.history.map((h) => h.loss);
        assert.ok(losses.at(-1)! < losses[0] - 0.05, `loss ${losses[0]} → ${losses.at(-1)}`);
        assert.equal(new Set(counts.slice(1)).size, 1, `tensor counts ${counts}`);
        for (const [k, v] of host(m)) assert.deepEqual(v, before.get(k), k);
      });
    });
  }

  describe('on one llama model', () => {
    let m: CausalLM;
    beforeEach(() => { m = CausalLM.create(llama, { seed: 2 }); });
    afterEach(() => m.dispose());

    it('counts trainable parameters exactly: r·(in + out) per target', () => {
      const r = 4;
      const a = addLora(m, { r, targetModules: ['q_proj', 'k_proj', 'v_proj', 'up_proj'] });
      // d 32, q out 32, k/v out nKvHeads·hd = 2·8 = 16, up out 64; 2 layers.
      const expected = 2 * r * ((32 + 32) + (32 + 16) + (32 + 16) + (32 + 64));
      const size = adapterSize(m, a);
      assert.equal(size.trainable, expected);
      assert.equal(size.base, m.paramCount());
      assert.ok(Math.abs(size.percent - (100 * expected) / m.paramCount()) < 1e-12);
      assert.equal(m.paramCount(true), expected);
      assert.deepEqual(a.weights.get('layers.0.attn.k_proj.lora_A')!.shape, [32, r]);
      assert.deepEqual(a.weights.get('layers.0.attn.k_proj.lora_B')!.shape, [r, 16]);
    });

    it('initialises as PEFT: A within 1/√in (Kaiming-uniform a=√5), B zero; gaussian std 1/r; seeded', () => {
      const a = addLora(m, { r: 8, seed: 5 }, 'u');
      const A = a.weights.get('layers.1.attn.q_proj.lora_A')!.dataSync() as Float32Array;
      const bound = 1 / Math.sqrt(32);
      assert.ok(A.every((x) => Math.abs(x) <= bound) && Math.max(...A.map(Math.abs)) > 0.9 * bound);
      assert.ok(a.weights.get('layers.1.attn.q_proj.lora_B')!.dataSync().every((x) => x === 0));
      const g = addLora(m, { r: 8, seed: 5, initLoraWeights: 'gaussian', targetModules: ['up_proj'] }, 'g');
      const G = g.weights.get('layers.0.mlp.up_proj.lora_A')!.dataSync() as Float32Array;
      const std = Math.sqrt(G.reduce((s, x) => s + x * x, 0) / G.length);
      assert.ok(Math.abs(std - 1 / 8) < 0.02, `std ${std}`);
      const m2 = CausalLM.create(llama, { seed: 2 });
      const again = addLora(m2, { r: 8, seed: 5 }, 'u');
      assert.deepEqual(again.weights.get('layers.1.attn.q_proj.lora_A')!.dataSync(), A);
      m2.dispose();
    });

    it('scales by α/r, or α/√r with rsLoRA', () => {
      const plain = addLora(m, { r: 4, alpha: 16 }, 'plain');
      const rs = addLora(m, { r: 4, alpha: 16, useRslora: true }, 'rs');
      assert.equal(plain.scale, 4);
      assert.equal(rs.scale, 8);
      perturb(rs, 1);
      const p = 'layers.0.attn.v_proj';
      const want = tf.tidy(() => tf.mul(tf.matMul(rs.weights.get(`${p}.lora_A`)!, rs.weights.get(`${p}.lora_B`)!), 16 / Math.sqrt(4)).dataSync());
      const before = m.weight(`${p}.weight`).dataSync().slice();
      mergeLora(m, 'rs');
      const got = tf.tidy(() => tf.sub(m.weight(`${p}.weight`), tf.tensor(before, [32, 16])).dataSync());
      assert.ok(maxAbsDiff(got, want) < 1e-6);
    });

    it('dropout is deterministic for a seed and off at inference', () => {
      const a = addLora(m, { r: 4, dropout: 0.5, targetModules: 'all-linear' });
      perturb(a, 2, 0.2);
      const train = (seed: number) => logits(m, { training: true, seed });
      assert.deepEqual(train(11), train(11));
      assert.ok(maxAbsDiff(train(11), train(12)) > 1e-4);
      assert.deepEqual(logits(m), logits(m, { training: false, seed: 11 }));
      assert.ok(maxAbsDiff(train(11), logits(m)) > 1e-4);
    });

    it('all-linear excludes lm_head; a bad target name is named in the error', () => {
      const m2 = CausalLM.create({ ...llama, tieEmbeddings: false }, { seed: 2 });
      const a = addLora(m2, { r: 2, targetModules: 'all-linear' });
      assert.ok(m2.linearPaths().includes('lm_head'));
      assert.ok(!a.targets.includes('lm_head'));
      assert.equal(a.loraTargets.length, 2 * 7);
      m2.dispose();
      assert.throws(() => addLora(m, { targetModules: ['q_proj', 'qproj'] }), /"qproj"/);
      assert.throws(() => addLora(m, { r: 0 }), /LoraConfig\.r/);
      assert.equal(peft(m).names.length, 0);
    });

    it('switches, disables and restores between two adapters', async () => {
      const base = logits(m);
      perturb(addLora(m, { r: 4 }, 'one'), 1);
      perturb(addLora(m, { r: 4, targetModules: ['o_proj'] }, 'two'), 2);
      const reg = peft(m);
      const two = logits(m);
      reg.use('one');
      const one = logits(m);
      assert.ok(maxAbsDiff(one, two) > 1e-3 && maxAbsDiff(one, base) > 1e-3);
      assert.deepEqual([...m.trainableParams().keys()].every((k) => k.startsWith('adapters.one.')), true);
      reg.disable();
      assert.deepEqual(logits(m), base);
      reg.enable();
      assert.deepEqual(logits(m), one);
      const inside = await reg.withDisabled(() => logits(m));
      assert.deepEqual(inside, base);
      assert.deepEqual(logits(m), one);
      reg.use(['one', 'two']);
      assert.ok(maxAbsDiff(logits(m), one) > 1e-3);
    });

    it("'cat' combination gives exactly Σ wᵢ·ΔWᵢ; 'linear' keeps the rank", () => {
      const a = addLora(m, { r: 2, alpha: 4, targetModules: ['q_proj', 'v_proj'] }, 'a');
      const b = addLora(m, { r: 3, alpha: 3, useRslora: true, targetModules: ['q_proj', 'o_proj'] }, 'b');
      perturb(a, 1);
      perturb(b, 2);
      const w = [0.7, -1.5];
      const cat = addWeightedLora(m, ['a', 'b'], w, 'mix', 'cat');
      assert.equal(cat.config.r, 5);
      assert.equal(cat.scale, 1);
      assert.deepEqual(cat.loraTargets, ['layers.0.attn.q_proj', 'layers.0.attn.v_proj', 'layers.0.attn.o_proj', 'layers.1.attn.q_proj', 'layers.1.attn.v_proj', 'layers.1.attn.o_proj']);
      for (const p of cat.loraTargets) {
        const got = tf.tidy(() => cat.delta(p).dataSync());
        const want = tf.tidy(() => {
          const parts = [a, b].flatMap((s, i) => (s.loraTargets.includes(p) ? [tf.mul(s.delta(p), w[i])] : []));
          return tf.addN(parts).dataSync();
        });
        assert.ok(maxAbsDiff(got, want) < 1e-6, p);
      }
      assert.throws(() => addWeightedLora(m, ['a', 'b'], w, 'lin', 'linear'), /equal ranks/);
      const c = addLora(m, { r: 2, alpha: 2 }, 'c');
      perturb(c, 3);
      const lin = addWeightedLora(m, ['a', 'c'], [0.5, 0.5], 'lin', 'linear');
      assert.equal(lin.config.r, 2);
      assert.deepEqual(lin.weights.get('layers.0.attn.q_proj.lora_A')!.shape, [32, 2]);
    });

    it('merge-and-unload leaves a plain model with the adapter\'s outputs', () => {
      const a = addLora(m, { r: 4, targetModules: 'all-linear' });
      perturb(a, 4);
      addLora(m, { r: 2 }, 'idle');
      peft(m).use('default');
      const want = logits(m);
      mergeAndUnload(m);
      assert.equal(peft(m).names.length, 0);
      assert.equal(m.adapterParams.size, 0);
      assert.equal(m.hooks.linear.size, 0);
      assert.ok(maxAbsDiff(logits(m), want) < 1e-5);
    });

    it('generates the same tokens with and without the KV cache', () => {
      perturb(addLora(m, { r: 4, targetModules: 'all-linear' }), 9, 0.2);
      const o = { maxNewTokens: 10, doSample: true, seed: 3, temperature: 0.8 };
      assert.deepEqual(generate(m, [1, 2, 3], { ...o, useCache: true }), generate(m, [1, 2, 3], { ...o, useCache: false }));
    });
  });
});
