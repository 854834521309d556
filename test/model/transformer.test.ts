import { strict as assert } from 'assert';
import * as tf from '@tensorflow/tfjs';
import { CausalLM, modelConfig, generate, ModelConfig } from '../../src/model';
import { maskedCrossEntropy } from '../../src/train/causal-lm';
import { engineReady, ids, maxAbsDiff, onBackend } from '../helpers';

const tiny = (over: Partial<ModelConfig> = {}) => modelConfig({ vocabSize: 61, contextLength: 16, dModel: 32, nLayers: 2, nHeads: 4, dFf: 48, ...over });
const logitsOf = (m: CausalLM, rows: number[][], opts = {}) => tf.tidy(() => m.forward(ids(rows), opts).arraySync()) as number[][][];

describe('model/transformer', () => {
  before(engineReady);

  for (const family of ['llama', 'gpt2'] as const) {
    describe(family, () => {
      let m: CausalLM;
      before(() => { m = new CausalLM(tiny({ family }), { seed: 3 }); });
      after(() => m.dispose());

      it('gives (B, T, V) logits and counts parameters as the formula says', () => {
        const out = logitsOf(m, [[1, 2, 3], [4, 5, 6]]);
        assert.deepEqual([out.length, out[0].length, out[0][0].length], [2, 3, 61]);
        const d = 32, v = 61, f = 48, T = 16, L = 2;
        const perLayer = family === 'llama'
          ? 2 * d + 4 * d * d + 3 * d * f
          : 2 * 2 * d + 4 * (d * d + d) + (d * f + f) + (f * d + d);
        const expected = v * d + L * perLayer + (family === 'llama' ? d : 2 * d) + (family === 'gpt2' ? T * d : 0);
        assert.equal(m.paramCount(), expected);
        const nonEmbed = expected - v * d - (family === 'gpt2' ? T * d : 0);
        assert.equal(m.flopsPerToken(8), 2 * nonEmbed + 2 * L * 8 * d + 2 * d * v);
      });

      it('is causal: a later token never changes earlier logits', () => {
        const a = logitsOf(m, [[1, 2, 3, 4, 5]]);
        const b = logitsOf(m, [[1, 2, 3, 9, 7]]);
        assert.ok(maxAbsDiff(a[0].slice(0, 3).flat(), b[0].slice(0, 3).flat()) < 1e-5);
        assert.ok(maxAbsDiff(a[0][4], b[0][4]) > 1e-4);
      });

      it('masks packed documents: a document\'s logits do not depend on the one before it', () => {
        const doc = [7, 8, 9, 10];
        const alone = logitsOf(m, [doc]);
        const segmentIds = tf.tensor2d([[0, 0, 0, 1, 1, 1, 1]], [1, 7], 'int32');
        const positionIds = tf.tensor2d([[0, 1, 2, 0, 1, 2, 3]], [1, 7], 'int32');
        const packed = logitsOf(m, [[3, 4, 5, ...doc]], { segmentIds, positionIds });
        assert.ok(maxAbsDiff(alone[0].flat(), packed[0].slice(3).flat()) < 1e-4);
        const unmasked = logitsOf(m, [[3, 4, 5, ...doc]], { positionIds });
        assert.ok(maxAbsDiff(alone[0].flat(), unmasked[0].slice(3).flat()) > 1e-3);
        tf.dispose([segmentIds, positionIds]);
      });

      it('generates the same tokens with and without the KV cache, also past the context window', () => {
        for (const opts of [{}, { doSample: true, temperature: 1.5, topK: 20, topP: 0.95, seed: 11 }]) {
          const cached = generate(m, [1, 2, 3], { maxNewTokens: 24, ...opts });
          const plain = generate(m, [1, 2, 3], { maxNewTokens: 24, useCache: false, ...opts });
          assert.equal(cached.length, 24);
          assert.deepEqual(cached, plain);
        }
      });
    });
  }

  it('KV-cached logits equal full-sequence logits position by position', () => {
    const m = new CausalLM(tiny({ nKvHeads: 2 }), { seed: 5 });
    const seq = [5, 9, 2, 44, 17, 3];
    const full = logitsOf(m, [seq])[0];
    const { KVCache } = require('../../src/model') as typeof import('../../src/model');
    const cache = new KVCache(2);
    const stepwise = [logitsOf(m, [seq.slice(0, 3)], { cache })[0], ...seq.slice(3).map((t) => logitsOf(m, [[t]], { cache })[0])].flat();
    cache.dispose();
    assert.ok(maxAbsDiff(full.flat(), stepwise.flat()) < 1e-4);
    m.dispose();
  });

  it('grouped-query attention equals multi-head attention with k/v heads repeated', () => {
    const gqa = new CausalLM(tiny({ nKvHeads: 2 }), { seed: 2 });
    const mha = new CausalLM(tiny({ nKvHeads: 4 }), { seed: 9 });
    const hd = 8;
    for (const [path, p] of mha.params) {
      const src = gqa.weight(path);
      if (/[kv]_proj\.weight$/.test(path)) {
        // kv head h serves query heads 2h and 2h+1: repeat each head's columns.
        const cols = tf.tidy(() => {
          const [din] = src.shape;
          const heads = tf.reshape(src, [din, 2, 1, hd]);
          return tf.reshape(tf.tile(heads, [1, 1, 2, 1]), [din, 4 * hd]);
        });
        p.variable.assign(cols);
        cols.dispose();
      } else p.variable.assign(src);
    }
    const a = logitsOf(gqa, [[1, 5, 9, 13, 2]]);
    const b = logitsOf(mha, [[1, 5, 9, 13, 2]]);
    assert.ok(maxAbsDiff(a.flat(2), b.flat(2)) < 1e-4);
    gqa.dispose();
    mha.dispose();
  });

  it('samples reproducibly: same seed same tokens; top-k 1 and tiny top-p are greedy; stops at a stop token', () => {
    const m = new CausalLM(tiny(), { seed: 4 });
    const o = { maxNewTokens: 12, doSample: true, temperature: 2, seed: 1 };
    assert.deepEqual(generate(m, [3], o), generate(m, [3], o));
    assert.notDeepEqual(generate(m, [3], o), generate(m, [3], { ...o, seed: 2 }));
    const greedy = generate(m, [3], { maxNewTokens: 12 });
    assert.deepEqual(generate(m, [3], { ...o, topK: 1 }), greedy);
    assert.deepEqual(generate(m, [3], { ...o, topP: 1e-6 }), greedy);
    const stop = greedy[4];
    const stopped = generate(m, [3], { maxNewTokens: 12, stopTokens: [stop] });
    assert.equal(stopped.at(-1), stop);
    assert.deepEqual(stopped, greedy.slice(0, greedy.indexOf(stop) + 1));
    assert.throws(() => generate(m, [3], { temperature: 0 }), /temperature/);
    assert.throws(() => generate(m, [99], {}), /prompt token 99/);
    m.dispose();
  });

  it('names linear layers by path and runs installed hooks', () => {
    const m = new CausalLM(tiny({ nLayers: 4 }), { seed: 1 });
    const paths = m.linearPaths();
    assert.ok(paths.includes('layers.3.attn.q_proj'));
    assert.ok(paths.includes('layers.0.mlp.gate_proj'));
    assert.equal(paths.length, 4 * 7);
    const before = logitsOf(m, [[1, 2, 3]]);
    let calls = 0;
    m.hooks.linear.set('layers.3.attn.q_proj', (x, base) => { calls++; return base(x); });
    assert.ok(maxAbsDiff(before.flat(2), logitsOf(m, [[1, 2, 3]]).flat(2)) < 1e-6);
    assert.equal(calls, 1);
    m.hooks.linear.set('layers.1.mlp.down_proj', (x, base) => tf.mul(base(x), 3) as tf.Tensor2D);
    assert.ok(maxAbsDiff(before.flat(2), logitsOf(m, [[1, 2, 3]]).flat(2)) > 1e-3);
    m.hooks.linear.clear();
    m.hooks.embedding = (e) => tf.zerosLike(e);
    const zeroed = logitsOf(m, [[1, 2, 3]]);
    assert.ok(maxAbsDiff(zeroed[0][0], logitsOf(m, [[9, 2, 3]])[0][0]) < 1e-6, 'embedding hook output is what the blocks see');
    m.hooks.embedding = undefined;
    assert.equal(m.setTrainable(/^(?!layers\.3\.)/, false), m.params.size - 9);
    assert.equal(m.trainableParams().size, 9);
    assert.ok([...m.trainableParams().keys()].every((k) => k.startsWith('layers.3.')));
    m.dispose();
  });

  it('dropout is seeded: same seed same logits, and off in eval', () => {
    const m = new CausalLM(tiny({ dropout: 0.2 }), { seed: 1 });
    const a = logitsOf(m, [[1, 2, 3]], { training: true, seed: 5 });
    const b = logitsOf(m, [[1, 2, 3]], { training: true, seed: 5 });
    const c = logitsOf(m, [[1, 2, 3]], { training: true, seed: 6 });
    const e = logitsOf(m, [[1, 2, 3]]);
    assert.equal(maxAbsDiff(a.flat(2), b.flat(2)), 0);
    assert.ok(maxAbsDiff(a.flat(2), c.flat(2)) > 1e-4);
    assert.ok(maxAbsDiff(a.flat(2), e.flat(2)) > 1e-4);
    m.dispose();
  });

  it('rejects bad configs naming the option', () => {
    assert.throws(() => modelConfig({ dModel: 30, nHeads: 4 }), /dModel \(30\).*nHeads/);
    assert.throws(() => modelConfig({ nHeads: 4, nKvHeads: 3 }), /nKvHeads/);
    assert.throws(() => modelConfig({ family: 'gpt2', nKvHeads: 2 }), /nKvHeads/);
    assert.throws(() => modelConfig({ vocabSize: 0 }), /vocabSize/);
    const m = new CausalLM(tiny(), { seed: 1 });
    assert.throws(() => tf.tidy(() => m.forward(ids([Array(17).fill(1)]))), /exceeds contextLength 16/);
    m.dispose();
  });

  for (const family of ['llama', 'gpt2'] as const) {
    it(`${family}: loss and gradients on wasm equal the cpu reference, and match finite differences`, async () => {
      const cfg = tiny({ family, nKvHeads: family === 'llama' ? 2 : undefined });
      const rows = [[1, 2, 3, 4, 5, 6], [7, 8, 9, 10, 11, 12]];
      const run = () => {
        const m = new CausalLM(cfg, { seed: 8 });
        const vars = [...m.trainableParams().values()];
        const f = () => {
          const logits = m.forward(ids(rows));
          return maskedCrossEntropy(logits, ids(rows.map((r) => r.map((t) => (t * 7) % 61))), tf.ones([2, 6]) as tf.Tensor2D);
        };
        const { value, grads } = tf.variableGrads(f, vars);
        const out = { loss: value.dataSync()[0], grads: vars.map((v) => Array.from(grads[v.name].dataSync())) };
        // Finite differences on a few coordinates of a few weights.
        const fd: [number, number][] = [];
        for (const name of ['layers.0.attn.q_proj.weight', 'layers.1.mlp.down_proj.weight', 'embed_tokens.weight', 'norm.weight']) {
          const v = m.weight(name);
          const vi = vars.indexOf(v);
          for (const idx of [0, 5]) {
            const base = v.dataSync().slice();
            const h = 1e-2;
            const at = (delta: number) => {
              const x = base.slice(); x[idx] += delta;
              tf.tidy(() => v.assign(tf.tensor(x, v.shape)));
              return tf.tidy(() => f().dataSync()[0]);
            };
            fd.push([(at(h) - at(-h)) / (2 * h), out.grads[vi][idx]]);
            tf.tidy(() => v.assign(tf.tensor(base, v.shape)));
          }
        }
        tf.dispose([value, Object.values(grads)]);
        m.dispose();
        return { ...out, fd };
      };
      const wasm = run();
      const cpu = await onBackend('cpu', run);
      assert.ok(Math.abs(wasm.loss - cpu.loss) < 1e-5, `loss ${wasm.loss} vs ${cpu.loss}`);
      wasm.grads.forEach((g, i) => assert.ok(maxAbsDiff(g, cpu.grads[i]) < 1e-5, `grad ${i}`));
      for (const [num, ana] of [...cpu.fd, ...wasm.fd]) assert.ok(Math.abs(num - ana) < 2e-3 + 0.05 * Math.abs(ana), `finite difference ${num} vs ${ana}`);
    });
  }

  it('never runs a rank-5 transpose in a training step', async () => {
    const m = new CausalLM(tiny({ nKvHeads: 2 }), { seed: 1 });
    const vars = [...m.trainableParams().values()];
    const info = await tf.profile(() => {
      const { value, grads } = tf.variableGrads(() => tf.mean(m.forward(ids([[1, 2, 3, 4]]))) as tf.Scalar, vars);
      tf.dispose([value, Object.values(grads)]);
    });
    const transposes = info.kernels.filter((k) => k.name === 'Transpose');
    assert.ok(transposes.length > 0);
    for (const k of transposes) assert.ok(k.inputShapes[0]!.length <= 4, `rank-${k.inputShapes[0]!.length} transpose`);
    m.dispose();
  });
});
