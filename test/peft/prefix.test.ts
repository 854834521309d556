import { strict as assert } from 'assert';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import * as tf from '@tensorflow/tfjs';
import { CausalLM, generate, KVCache } from '../../src/model';
import { PrefixTuning, addPrefixTuning, adapterSize, loadAdapter, loadPrefixTuning, peft, registerAdapterLoader, saveAdapter } from '../../src/peft';
import { Trainer } from '../../src/train/trainer';
import { TokenWindows, causalLmObjective } from '../../src/train/causal-lm';
import { baseWeights, logitsArray, stream, tinyFamilies } from './fixtures';
import { engineReady, ids, maxAbsDiff } from '../helpers';

const families = tinyFamilies(32);
const logits = logitsArray;

describe('peft/prefix', () => {
  before(engineReady);

  for (const [family, cfg] of Object.entries(families)) {
    describe(family, () => {
      let m: CausalLM;
      beforeEach(() => { m = CausalLM.create(cfg, { seed: 5 }); });
      afterEach(() => m.dispose());
      const kv = family === 'llama' ? 16 : 32; // token_dim = n_kv_heads · head_dim

      it('counts trainable parameters as the hand formula says, with and without projection', () => {
        const plain = addPrefixTuning(m, { numVirtualTokens: 4 }, 'plain');
        assert.equal(adapterSize(m, plain).trainable, 4 * 2 * 2 * kv);
        assert.equal(m.paramCount(true), 4 * 2 * 2 * kv, 'base frozen, only the prefix trains');
        assert.deepEqual(plain.weights.get('prompt_embeddings')!.shape, [4, 2 * 2 * kv]);
        const proj = addPrefixTuning(m, { numVirtualTokens: 4, prefixProjection: true, encoderHiddenSize: 24 }, 'proj');
        assert.equal(adapterSize(m, proj).trainable, 4 * kv + (kv * 24 + 24) + (24 * 2 * 2 * kv + 2 * 2 * kv));
        assert.deepEqual([...proj.weights.keys()], ['embedding.weight', 'transform.0.weight', 'transform.0.bias', 'transform.2.weight', 'transform.2.bias']);
        assert.deepEqual(proj.weights.get('transform.0.weight')!.shape, [24, kv], 'torch Linear layout [out, in]');
        const dflt = addPrefixTuning(m, { prefixProjection: true }, 'dflt');
        assert.equal(dflt.config.numVirtualTokens, 20);
        assert.equal(adapterSize(m, dflt).trainable, 20 * kv + (kv * kv + kv) + (kv * 2 * 2 * kv + 2 * 2 * kv));
        assert.deepEqual(dflt.peftConfig(), {
          peft_type: 'PREFIX_TUNING', task_type: 'CAUSAL_LM', num_virtual_tokens: 20, token_dim: kv, num_layers: 2,
          num_attention_heads: family === 'llama' ? 2 : 4, encoder_hidden_size: kv, prefix_projection: true,
          num_transformer_submodules: 1, init_weights: null, inference_mode: false,
        });
      });

      it('a prefix of a base run\'s keys/values reproduces the base logits of the continuation', () => {
        const a = [5, 9, 2, 33, 17];
        const rows = [[4, 8, 15, 16, 23, 42], [1, 2, 3, 4, 5, 6]];
        const base = logits(m, rows.map((r) => [...a, ...r]));
        const prefix = addPrefixTuning(m, { numVirtualTokens: a.length, initFrom: { tokens: a } });
        const got = logits(m, rows);
        for (let i = 0; i < rows.length; i++) assert.ok(maxAbsDiff(base[i].slice(a.length).flat(), got[i].flat()) < 1e-4);
        // PEFT's layout: column ((layer·2 + k|v)·n_kv + head)·hd + e of row p is that key/value.
        const cache = new KVCache(2);
        peft(m).withDisabledSync(() => tf.tidy(() => { m.hidden(ids([a]), { cache }); }));
        const emb = prefix.weights.get('prompt_embeddings')!.arraySync() as number[][];
        const v1 = cache.layers[1]!.v.arraySync() as number[][][][];
        const hd = 8;
        assert.equal(emb[3][((1 * 2 + 1) * (kv / hd) + 1) * hd + 5], v1[0][1][3][5]);
        cache.dispose();
      });

      it('generates the same tokens with and without the cache, also past the window, and continues like the base model', () => {
        const a = [7, 3, 11];
        addPrefixTuning(m, { numVirtualTokens: 3, initFrom: { tokens: a } });
        const asBase = generate(m, [1, 2], { maxNewTokens: 10 });
        const base = peft(m).withDisabledSync(() => generate(m, [...a, 1, 2], { maxNewTokens: 10 }));
        assert.deepEqual(asBase, base);
        peft(m).remove('default');
        addPrefixTuning(m, { numVirtualTokens: 6, initStd: 1, seed: 3 }, 'rand');
        for (const opts of [{}, { doSample: true, temperature: 1.5, topK: 20, seed: 11 }]) {
          const cached = generate(m, [1, 2, 3], { maxNewTokens: 40, ...opts }); // 43 > 32 − 6: slides
          const plain = generate(m, [1, 2, 3], { maxNewTokens: 40, useCache: false, ...opts });
          assert.deepEqual(cached, plain);
        }
      });

      it('disabled gives the base logits bit for bit', () => {
        const before = logits(m, [[3, 1, 4, 1, 5]]);
        addPrefixTuning(m, { numVirtualTokens: 4, initStd: 1 });
        assert.ok(maxAbsDiff(before.flat(2), logits(m, [[3, 1, 4, 1, 5]]).flat(2)) > 1e-3);
        peft(m).disable();
        assert.equal(m.hooks.prefix, undefined);
        assert.equal(maxAbsDiff(before.flat(2), logits(m, [[3, 1, 4, 1, 5]]).flat(2)), 0);
        peft(m).enable();
        assert.ok(maxAbsDiff(before.flat(2), logits(m, [[3, 1, 4, 1, 5]]).flat(2)) > 1e-3);
      });

      it('packed documents each see the prefix as if alone (segmentIds + positionIds)', () => {
        addPrefixTuning(m, { numVirtualTokens: 4, initStd: 1 });
        const d1 = [7, 8, 9];
        const d2 = [10, 11, 12, 13];
        const segmentIds = tf.tensor2d([[0, 0, 0, 1, 1, 1, 1]], [1, 7], 'int32');
        const positionIds = tf.tensor2d([[0, 1, 2, 0, 1, 2, 3]], [1, 7], 'int32');
        const packed = logits(m, [[...d1, ...d2]], { segmentIds, positionIds });
        assert.ok(maxAbsDiff(logits(m, [d1])[0].flat(), packed[0].slice(0, 3).flat()) < 1e-4);
        assert.ok(maxAbsDiff(logits(m, [d2])[0].flat(), packed[0].slice(3).flat()) < 1e-4);
        tf.dispose([segmentIds, positionIds]);
      });
    });
  }

  it('trains with the Trainer: loss falls, base weights stay bit-identical, tensor count stays flat (with projection too)', async () => {
    for (const prefixProjection of [false, true]) {
      // A wider init than the default makes the random base respond to its prefix within a few steps.
      const m = CausalLM.create({ ...families.llama, initStd: 0.1 }, { seed: 5 });
      const before = baseWeights(m);
      const prefix = addPrefixTuning(m, { numVirtualTokens: 4, prefixProjection, seed: 1 });
      const start = prefix.promptEmbeddingsToSave().arraySync();
      const t = new Trainer(m, causalLmObjective, new TokenWindows(stream(3000), 16, 8, 3), { lr: 0.1, maxSteps: 16, warmupSteps: 0 });
      const counts: number[] = [];
      t.on('step', () => counts.push(tf.memory().numTensors));
      const losses = (await t.train()).history.map((h) => h.loss);
      t.dispose();
      const mean = (xs: number[]) => xs.reduce((x, y) => x + y, 0) / xs.length;
      assert.ok(mean(losses.slice(-4)) < mean(losses.slice(0, 4)) - 0.1, `losses ${losses}`);
      assert.equal(new Set(counts.slice(2)).size, 1, `tensor counts ${counts}`);
      for (const [k, w] of baseWeights(m)) assert.deepEqual(w, before.get(k), k);
      assert.ok(maxAbsDiff(start.flat(), prefix.promptEmbeddingsToSave().arraySync().flat()) > 1e-3);
      m.dispose();
    }
  });

  it('a projected prefix is what promptEmbeddingsToSave exports, in PEFT\'s layout', async () => {
    const m = CausalLM.create(families.llama, { seed: 5 });
    const prefix = addPrefixTuning(m, { numVirtualTokens: 3, prefixProjection: true, encoderHiddenSize: 8 });
    const saved = prefix.promptEmbeddingsToSave();
    assert.deepEqual(saved.shape, [3, 2 * 2 * 16]);
    const rows = saved.arraySync();
    const { k, v } = prefix.prefix(1, 2); // (2, n_kv, P, hd)
    const ka = k.arraySync(), va = v.arraySync();
    for (const [p, h, e] of [[0, 0, 0], [2, 1, 7], [1, 1, 3]]) {
      assert.ok(Math.abs(ka[1][h][p][e] - rows[p][((1 * 2 + 0) * 2 + h) * 8 + e]) < 1e-6);
      assert.ok(Math.abs(va[0][h][p][e] - rows[p][((1 * 2 + 1) * 2 + h) * 8 + e]) < 1e-6);
    }
    const file = await prefix.fileTensors();
    assert.deepEqual([...file.keys()], ['prompt_embeddings']);
    assert.deepEqual(file.get('prompt_embeddings')!.shape, [3, 64]);
    assert.ok(maxAbsDiff(file.get('prompt_embeddings')!.data, rows.flat()) < 1e-6);
    tf.dispose([saved, k, v]);
    // PEFT's init_weights "zero" zeroes the last Linear: every prefix is 0.
    const zero = addPrefixTuning(m, { numVirtualTokens: 3, prefixProjection: true, initFrom: 'zero' }, 'zero');
    const z = zero.promptEmbeddingsToSave();
    assert.equal(z.abs().max().dataSync()[0], 0);
    assert.equal(zero.peftConfig().init_weights, 'zero');
    z.dispose();
    m.dispose();
  });

  it('checks the context budget: P + T must fit contextLength', () => {
    const m = CausalLM.create(families.llama, { seed: 5 });
    addPrefixTuning(m, { numVirtualTokens: 20 });
    assert.equal(m.reservedPositions(), 20);
    logits(m, [Array.from({ length: 12 }, (_, i) => i)]);
    assert.throws(() => logits(m, [Array.from({ length: 13 }, (_, i) => i)]), /33 tokens \(20 of them prefix/);
    assert.equal(generate(m, [1, 2, 3], { maxNewTokens: 15 }).length, 15);
    m.dispose();
  });

  it('rejects bad configs naming the option', () => {
    const m = CausalLM.create(families.llama, { seed: 5 });
    const bad: [object, RegExp][] = [
      [{ numVirtualTokens: 0 }, /numVirtualTokens must be a positive integer/],
      [{ numVirtualTokens: 32 }, /numVirtualTokens \(32\) must be below contextLength \(32\)/],
      [{ encoderHiddenSize: 2.5, prefixProjection: true }, /encoderHiddenSize must be a positive integer/],
      [{ initStd: 0 }, /initStd must be > 0/],
      [{ initFrom: 'text' }, /initFrom must be/],
      [{ numVirtualTokens: 3, initFrom: { tokens: [1, 2] } }, /initFrom.tokens must hold numVirtualTokens = 3/],
      [{ numVirtualTokens: 2, initFrom: { tokens: [1, 99] } }, /initFrom.tokens: 99 is not a token id/],
      [{ numVirtualTokens: 2, initFrom: { tokens: [1, 2] }, prefixProjection: true }, /initFrom \{ tokens \} needs prefixProjection false/],
      [{ num_virtual_tokens: 4 }, /unknown option "num_virtual_tokens"/],
    ];
    const tensors = tf.memory().numTensors;
    for (const [config, re] of bad) assert.throws(() => addPrefixTuning(m, config as never), re);
    addPrefixTuning(m, { numVirtualTokens: 2 });
    const n = tf.memory().numTensors;
    assert.throws(() => addPrefixTuning(m, { numVirtualTokens: 2 }), /already exists/);
    assert.equal(tf.memory().numTensors, n, 'a refused adapter frees its weights');
    assert.ok(n > tensors);
    m.dispose();
  });
});

describe('peft/prefix files', () => {
  before(engineReady);

  it('saves PEFT\'s prompt_embeddings and loads it back to the same logits (a projected prefix loads plain)', async () => {
    const m = CausalLM.create(families.llama, { seed: 5 });
    addPrefixTuning(m, { numVirtualTokens: 3, prefixProjection: true, encoderHiddenSize: 8 });
    const want = logits(m, [[1, 2, 3]]);
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'prefix-'));
    try {
      await saveAdapter(m, dir);
      peft(m).clear();
      registerAdapterLoader('PREFIX_TUNING', loadPrefixTuning); // in case another suite swapped it
      const loaded = loadAdapter(m, dir, 'back') as PrefixTuning;
      assert.equal(loaded.config.prefixProjection, false);
      assert.ok(maxAbsDiff(want.flat(2), logits(m, [[1, 2, 3]]).flat(2)) < 1e-6);
      const other = CausalLM.create({ ...families.llama, nLayers: 3 }, { seed: 5 });
      assert.throws(() => loadAdapter(other, dir), /prompt_embeddings has shape \[3,64\], this model needs \[3,96\]/);
      other.dispose();
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
      m.dispose();
    }
  });
});
