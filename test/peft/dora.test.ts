/**
 * DoRA (LoRA's `useDora`): the formula by hand, the detached norm's gradients against finite differences,
 * merge / unmerge, PEFT's file layout, and training on the shipped model.
 */
import { strict as assert } from 'assert';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import * as tf from '@tensorflow/tfjs';
import { CausalLM } from '../../src/model';
import { loadModel } from '../../src/io/checkpoint';
import { readSafetensors, writeSafetensors } from '../../src/io/safetensors';
import { Trainer } from '../../src/train/trainer';
import { TokenWindows, causalLmObjective } from '../../src/train/causal-lm';
import { peft } from '../../src/peft/peft';
import { LoraAdapter, addDora, addLora, addWeightedLora, hashSeed, loraDefaults, mergeAndUnload, mergeLora, unmergeLora } from '../../src/peft/lora';
import { ADAPTER_CONFIG_FILE, ADAPTER_WEIGHTS_FILE, loadAdapter, saveAdapter } from '../../src/peft/io';
import { mergedCopy } from '../../src/peft/merge';
import { lab } from '../../src/lab/lab';
import { dataset } from '../../src/lab/data';
import { baseWeights, logitsOf, stream, tinyFamilies } from './fixtures';
import { engineReady, maxAbsDiff } from '../helpers';

const { llama, gpt2 } = tinyFamilies();
const host = (t: tf.Tensor) => Array.from(t.dataSync());

/** Seeded noise in every DoRA weight (B, A and m), so each part shows in the outputs. */
function perturb(a: LoraAdapter, seed = 5): void {
  for (const [k, v] of a.weights) {
    tf.tidy(() => v.assign(tf.add(v, k.endsWith('lora_magnitude_vector') ? tf.mul(v, tf.randomUniform(v.shape, -0.3, 0.3, 'float32', seed++)) : tf.randomNormal(v.shape, 0, 0.1, 'float32', seed++))));
  }
}

/**
 * Plain-JS DoRA layer on row-major [in, out] W, A [in, r], B [r, out]: y = g ⊙ (x·W + s·x·A·B) + b with
 * g = m / ‖W + s·A·B‖ over the input axis; `norm` overrides the norm (a detached one stays fixed).
 */
function doraByHand(x: number[], w: number[], a: number[], b: number[], m: number[], bias: number[] | undefined, s: number, inDim: number, outDim: number, r: number, norm?: number[]): { y: number[]; norm: number[] } {
  const v = (i: number, j: number) => {
    let ab = 0;
    for (let k = 0; k < r; k++) ab += a[i * r + k] * b[k * outDim + j];
    return w[i * outDim + j] + s * ab;
  };
  const n = norm ?? Array.from({ length: outDim }, (_, j) => Math.sqrt(Array.from({ length: inDim }, (_, i) => v(i, j) ** 2).reduce((p, q) => p + q, 0)));
  const y = Array.from({ length: outDim }, (_, j) => {
    let dot = 0;
    for (let i = 0; i < inDim; i++) dot += x[i] * v(i, j);
    return (m[j] / n[j]) * dot + (bias ? bias[j] : 0);
  });
  return { y, norm: n };
}

describe('peft/dora', function () {
  this.timeout(120000);
  before(engineReady);

  it('is off by default (PEFT\'s use_dora = False); addDora is addLora with useDora', () => {
    assert.equal(loraDefaults.useDora, false);
    const m = CausalLM.create(llama, { seed: 1 });
    const a = addDora(m, { r: 2 });
    assert.equal(a.config.useDora, true);
    // One magnitude per output unit of each target: q_proj [32, 32] → 32, v_proj [32, 16] → 16.
    assert.deepEqual(a.weights.get('layers.0.attn.q_proj.lora_magnitude_vector')!.shape, [32]);
    assert.deepEqual(a.weights.get('layers.0.attn.v_proj.lora_magnitude_vector')!.shape, [16]);
    assert.throws(() => addLora(m, { useDora: 'yes' as unknown as boolean }, 'x'), /LoraConfig.useDora must be true or false/);
    m.dispose();
  });

  for (const fam of [llama, gpt2]) {
    describe(fam.family!, () => {
      let m: CausalLM;
      beforeEach(() => { m = CausalLM.create(fam, { seed: 1 }); });
      afterEach(() => m.dispose());

      it('starts as an exact no-op: m = ‖W‖_c per output unit (the norm over the input axis of tunelab\'s [in, out])', () => {
        const base = logitsOf(m);
        const a = addDora(m, { r: 4, targetModules: 'all-linear' });
        assert.deepEqual(logitsOf(m), base);
        const w = m.weight('layers.1.mlp.down_proj.weight');
        const [inDim, outDim] = w.shape;
        const wv = host(w);
        const want = Array.from({ length: outDim }, (_, j) => Math.sqrt(Array.from({ length: inDim }, (_, i) => wv[i * outDim + j] ** 2).reduce((p, q) => p + q, 0)));
        assert.ok(maxAbsDiff(host(a.weights.get('layers.1.mlp.down_proj.lora_magnitude_vector')!), want) < 1e-5);
        perturb(a);
        assert.ok(maxAbsDiff(logitsOf(m), base) > 1e-3);
      });

      it('a layer\'s output equals the formula by hand (bias included on GPT-2)', () => {
        const p = 'layers.0.attn.q_proj';
        const a = addDora(m, { r: 3, alpha: 7, targetModules: [p] });
        perturb(a);
        const [inDim, outDim] = m.weight(`${p}.weight`).shape;
        const xs = Array.from({ length: 2 * inDim }, (_, i) => Math.sin(i * 0.7));
        const got = tf.tidy(() => host(m.linear(p, tf.tensor2d(xs, [2, inDim]))));
        const bias = m.params.get(`${p}.bias`) ? host(m.weight(`${p}.bias`)) : undefined;
        assert.equal(bias !== undefined, fam.family === 'gpt2');
        for (let row = 0; row < 2; row++) {
          const { y } = doraByHand(xs.slice(row * inDim, (row + 1) * inDim), host(m.weight(`${p}.weight`)), host(a.weights.get(`${p}.lora_A`)!),
            host(a.weights.get(`${p}.lora_B`)!), host(a.weights.get(`${p}.lora_magnitude_vector`)!), bias, 7 / 3, inDim, outDim, 3);
          assert.ok(maxAbsDiff(got.slice(row * outDim, (row + 1) * outDim), y) < 1e-5, `row ${row}`);
        }
      });

      it('merge equals the adapter; unmerge restores the base; mergeAndUnload leaves a plain model', () => {
        const before = baseWeights(m);
        const a = addDora(m, { r: 4, alpha: 16, targetModules: ['q_proj', 'v_proj', 'down_proj'], bias: fam.family === 'gpt2' ? 'lora_only' : 'none' });
        perturb(a);
        const withAdapter = logitsOf(m);
        const tensors = tf.memory().numTensors;
        mergeLora(m);
        assert.equal(m.hooks.linear.size, 0);
        assert.ok(maxAbsDiff(logitsOf(m), withAdapter) < 1e-5);
        unmergeLora(m);
        assert.equal(tf.memory().numTensors, tensors, 'the norms kept for unmerging are freed');
        for (const [k, v] of baseWeights(m)) assert.ok(maxAbsDiff(v, before.get(k)!) < 1e-5, k);
        assert.ok(maxAbsDiff(logitsOf(m), withAdapter) < 1e-5);
        mergeAndUnload(m);
        assert.equal(peft(m).names.length, 0);
        assert.ok(maxAbsDiff(logitsOf(m), withAdapter) < 1e-5);
      });
    });
  }

  it('gradients of m, A and B match finite differences of the formula with the norm held constant (detached, as PEFT)', () => {
    const m = CausalLM.create(gpt2, { seed: 3 });
    const p = 'layers.0.mlp.down_proj';
    const a = addDora(m, { r: 2, alpha: 4, targetModules: [p], initLoraWeights: false });
    perturb(a);
    const [inDim, outDim] = m.weight(`${p}.weight`).shape;
    const xs = Array.from({ length: inDim }, (_, i) => Math.cos(i * 1.3));
    const R = Array.from({ length: outDim }, (_, j) => Math.sin(j * 0.9 + 1));
    const keys = ['lora_A', 'lora_B', 'lora_magnitude_vector'].map((k) => `${p}.${k}`);
    const vars = keys.map((k) => a.weights.get(k)!);
    const { grads } = tf.variableGrads(() => tf.sum(tf.mul(m.linear(p, tf.tensor2d(xs, [1, inDim])), tf.tensor1d(R))) as tf.Scalar, vars);
    const w = host(m.weight(`${p}.weight`));
    const bias = host(m.weight(`${p}.bias`));
    const vals = vars.map(host);
    const loss = (v: number[][], norm?: number[]) => {
      const { y } = doraByHand(xs, w, v[0], v[1], v[2], bias, 2, inDim, outDim, 2, norm);
      return y.reduce((s, yj, j) => s + yj * R[j], 0);
    };
    const fixed = doraByHand(xs, w, vals[0], vals[1], vals[2], bias, 2, inDim, outDim, 2).norm;
    const eps = 1e-4;
    let liveDiffers = false;
    vars.forEach((v, which) => {
      const g = host(grads[v.name]);
      for (let i = 0; i < vals[which].length; i += Math.max(1, Math.floor(vals[which].length / 12))) {
        const shifted = (d: number) => vals.map((arr, k) => (k === which ? arr.map((x, j) => (j === i ? x + d : x)) : arr));
        const fd = (loss(shifted(eps), fixed) - loss(shifted(-eps), fixed)) / (2 * eps);
        assert.ok(Math.abs(fd - g[i]) < 1e-3 * Math.max(1, Math.abs(fd)), `${keys[which]}[${i}]: autodiff ${g[i]} vs finite difference ${fd}`);
        const live = (loss(shifted(eps)) - loss(shifted(-eps))) / (2 * eps);
        if (Math.abs(live - g[i]) > 1e-3 * Math.max(1, Math.abs(live))) liveDiffers = true;
      }
    });
    assert.ok(liveDiffers, 'a norm that takes gradients would give other A/B gradients: the check can tell them apart');
    tf.dispose(Object.values(grads));
    m.dispose();
  });

  it('with dropout, as PEFT: y = x·W + b + (g − 1)⊙(xd·W) + g⊙s·xd·A·B (the base recomputed on the dropped input)', () => {
    const m = CausalLM.create(gpt2, { seed: 5 });
    const p = 'layers.1.attn.v_proj';
    const a = addDora(m, { r: 2, alpha: 2, dropout: 0.5, targetModules: [p] });
    perturb(a);
    const [inDim, outDim] = m.weight(`${p}.weight`).shape;
    const x = tf.tensor2d(Array.from({ length: 3 * inDim }, (_, i) => Math.cos(i)), [3, inDim]);
    const got = tf.tidy(() => host(m.linear(p, x, { training: true, seed: 11 })));
    const want = tf.tidy(() => {
      const xd = tf.dropout(x, 0.5, undefined, hashSeed(`11:default:${p}`)) as tf.Tensor2D;
      const w = m.weight(`${p}.weight`);
      const v = tf.add(w, tf.matMul(a.weights.get(`${p}.lora_A`)!, a.weights.get(`${p}.lora_B`)!));
      const g = tf.div(a.weights.get(`${p}.lora_magnitude_vector`)!, tf.sqrt(tf.sum(tf.square(v), 0)));
      const full = tf.add(tf.matMul(x, w), m.weight(`${p}.bias`));
      return host(tf.addN([full, tf.mul(tf.sub(g, 1), tf.matMul(xd, w)), tf.mul(g, tf.matMul(tf.matMul(xd, a.weights.get(`${p}.lora_A`)!), a.weights.get(`${p}.lora_B`)!))]));
    });
    assert.ok(maxAbsDiff(got, want) < 1e-5);
    assert.ok(maxAbsDiff(got, tf.tidy(() => host(m.linear(p, x)))) > 1e-3, 'the mask matters');
    x.dispose();
    m.dispose();
  });

  it('mergedCopy (how a lab stage hands on its model) folds a trained DoRA to the same logits', async () => {
    const m = CausalLM.create(gpt2, { seed: 4 });
    perturb(addDora(m, { r: 2, targetModules: ['q_proj', 'k_proj', 'up_proj'] }));
    const copy = await mergedCopy(m);
    assert.equal(peft(copy).names.length, 0);
    assert.ok(maxAbsDiff(logitsOf(copy), logitsOf(m)) < 1e-5);
    copy.dispose();
    m.dispose();
  });

  it('refuses addWeightedLora (a sum of DoRA updates is not a DoRA update)', () => {
    const m = CausalLM.create(llama, { seed: 1 });
    addDora(m, { r: 2 }, 'd');
    addLora(m, { r: 2 }, 'l');
    assert.throws(() => addWeightedLora(m, ['d', 'l'], [0.5, 0.5], 'mix'), /addWeightedLora: d is a DoRA adapter/);
    m.dispose();
  });

  describe('files in PEFT\'s layout', () => {
    let tmp: string;
    before(() => { tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'tunelab-dora-')); });
    after(() => fs.rmSync(tmp, { recursive: true, force: true }));

    it('llama: use_dora true, lora_magnitude_vector [out] beside lora_A / lora_B; loads back to the same logits', async () => {
      const m = CausalLM.create(llama, { seed: 2 });
      const a = addDora(m, { r: 2, alpha: 5, targetModules: ['q_proj', 'v_proj', 'down_proj'] });
      perturb(a);
      const want = logitsOf(m);
      const dir = path.join(tmp, 'llama');
      await saveAdapter(m, dir);
      const config = JSON.parse(fs.readFileSync(path.join(dir, ADAPTER_CONFIG_FILE), 'utf8'));
      assert.equal(config.use_dora, true);
      const st = readSafetensors(path.join(dir, ADAPTER_WEIGHTS_FILE)).tensors;
      const shapes = Object.fromEntries([...st].filter(([k]) => k.includes('layers.0.')).map(([k, e]) => [k, e.shape]));
      assert.deepEqual(shapes, {
        'base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight': [2, 32], 'base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight': [32, 2],
        'base_model.model.model.layers.0.self_attn.q_proj.lora_magnitude_vector': [32],
        'base_model.model.model.layers.0.self_attn.v_proj.lora_A.weight': [2, 32], 'base_model.model.model.layers.0.self_attn.v_proj.lora_B.weight': [16, 2],
        'base_model.model.model.layers.0.self_attn.v_proj.lora_magnitude_vector': [16],
        'base_model.model.model.layers.0.mlp.down_proj.lora_A.weight': [2, 64], 'base_model.model.model.layers.0.mlp.down_proj.lora_B.weight': [32, 2],
        'base_model.model.model.layers.0.mlp.down_proj.lora_magnitude_vector': [32],
      });
      const fresh = CausalLM.create(llama, { seed: 2 });
      const back = loadAdapter(fresh, dir) as LoraAdapter;
      assert.equal(back.config.useDora, true);
      assert.ok(maxAbsDiff(logitsOf(fresh), want) < 1e-6);
      // Without use_dora the magnitudes are named as unexpected, not silently dropped.
      fs.writeFileSync(path.join(dir, ADAPTER_CONFIG_FILE), JSON.stringify({ ...config, use_dora: false }));
      assert.throws(() => loadAdapter(fresh, dir, 'plain'), /unexpected tensors .*q_proj\.lora_magnitude_vector.*lora_magnitude_vector tensors are DoRA's: adapter_config\.json needs "use_dora": true/);
      fresh.dispose();
      m.dispose();
    });

    it('GPT-2: q/v DoRAs become one c_attn magnitude [3d] (k\'s block = ‖W_k‖_c); loads back; a changed k block is refused', async () => {
      const m = CausalLM.create(gpt2, { seed: 2 });
      const a = addDora(m, { r: 2, targetModules: ['layers.0.attn.q_proj', 'layers.0.attn.v_proj', 'layers.1.attn.k_proj'] });
      perturb(a);
      const want = logitsOf(m);
      const dir = path.join(tmp, 'gpt2');
      await saveAdapter(m, dir);
      const st = readSafetensors(path.join(dir, ADAPTER_WEIGHTS_FILE)).tensors;
      const key = 'base_model.model.transformer.h.0.attn.c_attn.lora_magnitude_vector';
      const mag = st.get(key)!.read().data as Float32Array;
      assert.deepEqual(st.get(key)!.shape, [96]);
      const kNorm = tf.tidy(() => host(tf.sqrt(tf.sum(tf.square(m.weight('layers.0.attn.k_proj.weight')), 0))));
      assert.deepEqual([...mag.slice(0, 32)], host(a.weights.get('layers.0.attn.q_proj.lora_magnitude_vector')!));
      assert.ok(maxAbsDiff(mag.slice(32, 64), kNorm) < 1e-6);
      assert.deepEqual([...mag.slice(64)], host(a.weights.get('layers.0.attn.v_proj.lora_magnitude_vector')!));
      const fresh = CausalLM.create(gpt2, { seed: 2 });
      loadAdapter(fresh, dir);
      assert.ok(maxAbsDiff(logitsOf(fresh), want) < 1e-6);
      // A k block trained elsewhere cannot be dropped silently.
      const tensors = new Map([...st].map(([k, e]) => { const t = e.read(); return [k, { shape: t.shape, data: (t.data as Float32Array).slice() }]; }));
      tensors.get(key)!.data[40] += 0.5;
      writeSafetensors(path.join(dir, ADAPTER_WEIGHTS_FILE), tensors, { format: 'pt' });
      assert.throws(() => loadAdapter(fresh, dir, 'edited'), /c_attn\.lora_magnitude_vector" holds .* at row 40, in the block of layers\.0\.attn\.k_proj/);
      fresh.dispose();
      m.dispose();
    });
  });

  it('trains on the shipped tiny-llama: loss falls, tensor count flat, same seed → same losses; merges to the same logits', async () => {
    const run = async () => {
      const { model } = await loadModel('models/tiny-llama');
      const a = addDora(model, { r: 4, alpha: 8, dropout: 0.05, targetModules: ['q_proj', 'v_proj', 'up_proj'] });
      const t = new Trainer(model, causalLmObjective, new TokenWindows(stream(1200).map((x) => x + 100), 32, 4, 3), { lr: 5e-3, maxSteps: 10 });
      const counts: number[] = [];
      t.on('step', () => counts.push(tf.memory().numTensors));
      const r = await t.train();
      t.dispose();
      return { model, a, losses: r.history.map((h) => h.loss), counts };
    };
    const one = await run();
    const two = await run();
    assert.deepEqual(one.losses, two.losses);
    assert.ok(one.losses.at(-1)! < one.losses[0] - 0.1, `loss ${one.losses[0]} → ${one.losses.at(-1)}`);
    assert.equal(new Set(one.counts.slice(1)).size, 1, `tensor counts ${one.counts}`);
    // The magnitude moved from its start ‖W‖_c (B starts at zero): it trains, not only A/B.
    const p = 'layers.0.attn.q_proj';
    const initial = tf.tidy(() => host(tf.sqrt(tf.sum(tf.square(one.model.weight(`${p}.weight`)), 0))));
    assert.ok(maxAbsDiff(host(one.a.weights.get(`${p}.lora_magnitude_vector`)!), initial) > 1e-4);
    const rows = [[5, 200, 31, 7, 1000, 12, 64, 3]];
    const before = logitsOf(one.model, rows);
    mergeLora(one.model);
    assert.ok(maxAbsDiff(logitsOf(one.model, rows), before) < 1e-4);
    one.model.dispose();
    two.model.dispose();
  });

  it('lab: .dora() is a strategy, so compare puts it beside LoRA', async function () {
    this.timeout(600000);
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'dora-compare-'));
    try {
      const cmp = await lab.base('tiny-llama').log(dir).show(false).data(dataset('instructions').slice(0, 16)).compare({
        lora: (l) => l.lora({ r: 4 }),
        dora: (l) => l.dora({ r: 4 }),
      }, { method: 'sft', config: { maxSteps: 2, batchSize: 4, lr: 1e-3 } });
      const by = (s: string) => cmp.rows.find((r) => r.strategy === s)!;
      // DoRA adds one magnitude per output unit: q 128 + v 64 per layer, 4 layers.
      assert.equal(by('dora').trainableParams, by('lora').trainableParams + 4 * (128 + 64));
      assert.ok(by('dora').diskMiB > 0);
      cmp.dispose();
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
