import { strict as assert } from 'assert';
import * as tf from '@tensorflow/tfjs';
import { CausalLM } from '../../src/model';
import { generate } from '../../src/model/generate';
import { Trainer } from '../../src/train/trainer';
import { TokenWindows, causalLmObjective } from '../../src/train/causal-lm';
import { adapterSize, peft } from '../../src/peft/peft';
import { addIa3, ia3Defaults, mergeIa3, unmergeIa3 } from '../../src/peft/ia3';
import { addBottleneck } from '../../src/peft/bottleneck';
import { baseWeights, logitsOf, pretrained, task, tinyFamilies } from './fixtures';
import { engineReady, maxAbsDiff } from '../helpers';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { readSafetensors, writeSafetensors } from '../../src/io/safetensors';
import { ADAPTER_CONFIG_FILE, ADAPTER_WEIGHTS_FILE, loadAdapter, saveAdapter } from '../../src/peft/io';

const families = tinyFamilies();



const snapshot = baseWeights;

/** Vectors around 1 (as after training), so the scaling is measurable. */
function randomize(weights: ReadonlyMap<string, tf.Variable>, seed: number): void {
  let s = seed;
  for (const v of weights.values()) tf.tidy(() => v.assign(tf.randomUniform(v.shape, 0.5, 1.5, 'float32', s++)));
}

/** x·W (+ b) of the base layer. */
const baseLinear = (model: CausalLM, path: string, x: tf.Tensor2D) => {
  const y = tf.matMul(x, model.weight(`${path}.weight`) as tf.Tensor2D);
  const b = model.params.get(`${path}.bias`)?.variable;
  return b ? tf.add(y, b) : y;
};

describe('peft: IA3', () => {
  before(engineReady);

  it('exact trainable parameter counts and shapes', () => {
    // llama: k_proj, v_proj out = nKvHeads·hd = 16 each, down_proj in = dFf = 64, two blocks.
    const llama = CausalLM.create(families.llama, { seed: 1 });
    const a = addIa3(llama);
    assert.equal(adapterSize(llama, a).trainable, 2 * (16 + 16 + 64));
    assert.equal(llama.paramCount(true), 192);
    assert.deepEqual([...a.weights.keys()].slice(0, 3), ['layers.0.attn.k_proj.ia3_l', 'layers.0.attn.v_proj.ia3_l', 'layers.0.mlp.down_proj.ia3_l']);
    assert.deepEqual(a.weights.get('layers.0.mlp.down_proj.ia3_l')!.shape, [64]);
    assert.deepEqual(a.weights.get('layers.0.attn.k_proj.ia3_l')!.shape, [16]);
    // Regex form, outputs only.
    const b = addIa3(llama, { targetModules: 'layers\\.0\\.attn\\.(k|v)_proj', feedforwardModules: [] }, 'regex');
    assert.deepEqual(b.targets, ['layers.0.attn.k_proj', 'layers.0.attn.v_proj']);
    assert.equal(adapterSize(llama, b).trainable, 32);
    llama.dispose();
    // gpt2 (no GQA): k, v out = 32 each, down_proj in 64.
    const gpt2 = CausalLM.create(families.gpt2, { seed: 1 });
    assert.equal(adapterSize(gpt2, addIa3(gpt2)).trainable, 2 * (32 + 32 + 64));
    // all-linear: every projection's output, down_proj's input.
    const all = addIa3(gpt2, { targetModules: 'all-linear' }, 'all');
    assert.equal(adapterSize(gpt2, all).trainable, 2 * (32 * 4 + 64 + 64));
    gpt2.dispose();
  });

  it("scales k/v outputs and down_proj's input (PEFT's forward)", () => {
    const model = CausalLM.create(families.gpt2, { seed: 2 });
    const a = addIa3(model);
    randomize(a.weights, 3);
    tf.tidy(() => {
      const x = tf.randomNormal([5, 32], 0, 1, 'float32', 1) as tf.Tensor2D;
      const k = 'layers.1.attn.k_proj';
      const lk = a.weights.get(`${k}.ia3_l`)!;
      assert.ok(maxAbsDiff(model.linear(k, x).dataSync(), tf.mul(baseLinear(model, k, x), lk).dataSync()) < 1e-6);
      const d = 'layers.1.mlp.down_proj';
      const h = tf.randomNormal([5, 64], 0, 1, 'float32', 2) as tf.Tensor2D;
      const ld = a.weights.get(`${d}.ia3_l`)!;
      assert.ok(maxAbsDiff(model.linear(d, h).dataSync(), baseLinear(model, d, tf.mul(h, ld) as tf.Tensor2D).dataSync()) < 1e-5);
      const q = 'layers.1.attn.q_proj';
      assert.equal(maxAbsDiff(model.linear(q, x).dataSync(), baseLinear(model, q, x).dataSync()), 0, 'q_proj untouched');
    });
    model.dispose();
  });

  for (const [family, cfg] of Object.entries(families)) {
    it(`${family}: fresh adapter is an exact no-op; trains with the Trainer; base untouched; disable and KV cache`, async () => {
      const model = await pretrained(cfg);
      const base = logitsOf(model);
      const weights = snapshot(model);
      addIa3(model);
      assert.equal(maxAbsDiff(logitsOf(model), base), 0, 'fresh adapter changes logits');
      const trainer = new Trainer(model, causalLmObjective, new TokenWindows(task(2000), 16, 8, 3), { lr: 5e-2, maxSteps: 20 });
      const counts: number[] = [];
      trainer.on('step', () => counts.push(tf.memory().numTensors));
      const losses = (await trainer.train()).history.map((h) => h.loss);
      trainer.dispose();
      const mean = (xs: number[]) => xs.reduce((s, x) => s + x, 0) / xs.length;
      assert.ok(mean(losses.slice(-4)) < mean(losses.slice(0, 4)) - 0.2, `loss ${losses[0]} → ${losses.at(-1)}`);
      assert.equal(new Set(counts.slice(1)).size, 1, `tensor counts ${counts}`);
      for (const [k, v] of weights) assert.equal(maxAbsDiff(model.weight(k).dataSync(), v), 0, `base weight ${k} changed`);
      const tuned = logitsOf(model);
      assert.ok(maxAbsDiff(tuned, base) > 1e-3, 'trained adapter changes logits');
      peft(model).disable();
      assert.equal(maxAbsDiff(logitsOf(model), base), 0, 'disabled adapter');
      peft(model).enable();
      const prompt = [20, 25, 30];
      assert.deepEqual(generate(model, prompt, { maxNewTokens: 20, useCache: true }), generate(model, prompt, { maxNewTokens: 20, useCache: false }));
      const sampled = { maxNewTokens: 20, doSample: true, seed: 3 };
      assert.deepEqual(generate(model, prompt, { ...sampled, useCache: true }), generate(model, prompt, { ...sampled, useCache: false }));

      // Merge: same logits without hooks; unmerge: back to base + adapter; merge + remove keeps it.
      mergeIa3(model);
      assert.equal(model.hooks.linear.size, 0);
      assert.equal(model.paramCount(true), 0, 'merged vectors do not train');
      assert.ok(maxAbsDiff(logitsOf(model), tuned) < 1e-4, `merged ${maxAbsDiff(logitsOf(model), tuned)}`);
      assert.ok(maxAbsDiff(model.weight('layers.0.attn.v_proj.weight').dataSync(), weights.get('layers.0.attn.v_proj.weight')!) > 1e-4);
      assert.throws(() => mergeIa3(model), /already merged/);
      unmergeIa3(model);
      assert.ok(model.hooks.linear.size > 0);
      for (const [k, v] of weights) assert.ok(maxAbsDiff(model.weight(k).dataSync(), v) < 1e-6, `unmerged ${k}`);
      assert.ok(maxAbsDiff(logitsOf(model), tuned) < 1e-4);
      assert.throws(() => unmergeIa3(model), /not merged/);
      mergeIa3(model);
      peft(model).remove('default');
      assert.ok(maxAbsDiff(logitsOf(model), tuned) < 1e-4, 'merge and unload');
      model.dispose();
    });
  }

  it('stacks: two IA3 adapters multiply; with a bottleneck; disable gives the base', () => {
    const model = CausalLM.create(families.llama, { seed: 3 });
    const base = logitsOf(model);
    const a = addIa3(model, {}, 'a');
    const b = addIa3(model, { targetModules: ['v_proj', 'down_proj'] }, 'b');
    randomize(a.weights, 10);
    randomize(b.weights, 20);
    const p = peft(model);
    p.use(['a', 'b']);
    tf.tidy(() => {
      const v = 'layers.0.attn.v_proj';
      const x = tf.randomNormal([3, 32], 0, 1, 'float32', 5) as tf.Tensor2D;
      const expected = tf.mul(tf.mul(baseLinear(model, v, x), a.weights.get(`${v}.ia3_l`)!), b.weights.get(`${v}.ia3_l`)!);
      assert.ok(maxAbsDiff(model.linear(v, x).dataSync(), expected.dataSync()) < 1e-6);
    });
    assert.equal(model.paramCount(true), adapterSize(model, a).trainable + adapterSize(model, b).trainable);
    const both = logitsOf(model);
    p.use('a');
    const onlyA = logitsOf(model);
    assert.ok(maxAbsDiff(both, onlyA) > 1e-4 && maxAbsDiff(onlyA, base) > 1e-4);
    const bn = addBottleneck(model, { bottleneckSize: 4 }, 'bn');
    for (const w of bn.weights.values()) tf.tidy(() => w.assign(tf.randomNormal(w.shape, 0, 0.3, 'float32', 9)));
    p.use(['bn', 'a']);
    assert.ok(maxAbsDiff(logitsOf(model), onlyA) > 1e-4);
    p.disable();
    assert.equal(maxAbsDiff(logitsOf(model), base), 0);
    assert.throws(() => mergeIa3(model, 'bn'), /adapter "bn" is BOTTLENECK, not IA3/);
    model.dispose();
  });

  it('peftConfig matches PEFT', () => {
    const model = CausalLM.create(families.llama, { seed: 1 });
    const { tunelab, ...config } = addIa3(model).peftConfig();
    assert.deepEqual(config, {
      peft_type: 'IA3', task_type: 'CAUSAL_LM', target_modules: ['k_proj', 'v_proj', 'down_proj'],
      feedforward_modules: ['down_proj'], init_ia3_weights: true, fan_in_fan_out: false,
    });
    // tunelab's own metadata goes to tunelab_adapter.json, not adapter_config.json (see test/peft/peft-compat).
    assert.deepEqual((tunelab as { targets: string[] }).targets.slice(0, 3), ['layers.0.attn.k_proj', 'layers.0.attn.v_proj', 'layers.0.mlp.down_proj']);
    assert.ok(Object.isFrozen(ia3Defaults) && Object.isFrozen(ia3Defaults.targetModules));
    model.dispose();
  });

  it('rejects bad configs naming the option, leaking nothing', () => {
    const model = CausalLM.create(families.llama, { seed: 1 });
    const before = tf.memory().numTensors;
    const bad: [Record<string, unknown>, RegExp][] = [
      [{ targetModules: ['k_proj'], feedforwardModules: ['down_proj'] }, /Ia3Config\.feedforwardModules must be a subset of targetModules \(not targeted: layers\.0\.mlp\.down_proj/],
      [{ targetModules: ['c_attn'] }, /Ia3Config\.targetModules: no linear layer matches "c_attn"/],
      [{ targetModules: 'nothing\\.here' }, /Ia3Config\.targetModules: .* matches no linear layer/],
      [{ feedforwardModules: ['mlp'] }, /Ia3Config\.feedforwardModules: no linear layer matches "mlp"/],
      [{ target_modules: ['k_proj'] }, /ia3: unknown option "target_modules"; did you mean "targetModules"\?/],
    ];
    for (const [config, message] of bad) assert.throws(() => addIa3(model, config as never), message);
    assert.throws(() => addIa3(model, {}, 'a.b'), /adapter name/);
    assert.equal(tf.memory().numTensors, before);
    assert.deepEqual(peft(model).names, []);
    assert.throws(() => mergeIa3(model), /no adapter "default"/);
    model.dispose();
  });
});

describe('peft: IA3 files (PEFT layout)', () => {
  let tmp: string;
  before(async () => {
    await engineReady();
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'tunelab-ia3-io-'));
  });
  after(() => fs.rmSync(tmp, { recursive: true, force: true }));

  const writeFolder = (dir: string, config: Record<string, unknown>, tensors: Map<string, { shape: number[]; data: Float32Array }>) => {
    fs.mkdirSync(dir, { recursive: true });
    fs.writeFileSync(path.join(dir, ADAPTER_CONFIG_FILE), JSON.stringify(config));
    writeSafetensors(path.join(dir, ADAPTER_WEIGHTS_FILE), tensors);
  };
  const seq = (n: number, f: (i: number) => number) => Float32Array.from({ length: n }, (_, i) => f(i));

  it("gpt2: saves k/v as HF's fused c_attn vector (q part all ones) and mlp.c_proj, config in HF names", async () => {
    const model = CausalLM.create(families.gpt2, { seed: 1 });
    const a = addIa3(model);
    for (const [k, v] of a.weights) v.assign(tf.add(v, tf.randomNormal(v.shape, 0, 0.1, 'float32', k.length)));
    const dir = path.join(tmp, 'gpt2-save');
    await saveAdapter(model, dir);
    const st = readSafetensors(path.join(dir, ADAPTER_WEIGHTS_FILE)).tensors;
    const fused = st.get('base_model.model.transformer.h.1.attn.c_attn.ia3_l')!;
    assert.deepEqual(fused.shape, [96, 1]);
    const data = fused.read().data as Float32Array;
    assert.ok(data.slice(0, 32).every((x) => x === 1), 'q is not adapted: no scaling');
    assert.deepEqual([...data.slice(32, 64)], [...a.weights.get('layers.1.attn.k_proj.ia3_l')!.dataSync()]);
    assert.deepEqual([...data.slice(64)], [...a.weights.get('layers.1.attn.v_proj.ia3_l')!.dataSync()]);
    assert.deepEqual(st.get('base_model.model.transformer.h.1.mlp.c_proj.ia3_l')!.shape, [1, 64]);
    const c = JSON.parse(fs.readFileSync(path.join(dir, ADAPTER_CONFIG_FILE), 'utf8'));
    assert.deepEqual(c.target_modules, ['c_attn', 'mlp.c_proj']);
    // Loaded back, the adapter is the same one: k/v only (tunelab_adapter.json), same logits.
    const fresh = CausalLM.create(families.gpt2, { seed: 1 });
    assert.deepEqual(loadAdapter(fresh, dir).targets, a.targets);
    assert.equal(maxAbsDiff(logitsOf(fresh), logitsOf(model)), 0);
    fresh.dispose();
    // Scaling q/k/v inputs has no c_attn form: refused, naming why.
    const ff = CausalLM.create(families.gpt2, { seed: 1 });
    addIa3(ff, { targetModules: ['k_proj'], feedforwardModules: ['k_proj'] });
    await assert.rejects(saveAdapter(ff, path.join(tmp, 'gpt2-ff')), /layers\.0\.attn\.k_proj scales its input .* one fused c_attn/);
    ff.dispose();
    assert.deepEqual(c.feedforward_modules, ['mlp.c_proj']);
    assert.equal(c.fan_in_fan_out, true);
    model.dispose();
  });

  it("gpt2: loads PEFT's default layout (fused c_attn (3d, 1), mlp.c_proj (1, 4d)) exactly", () => {
    const d = 32;
    const tensors = new Map<string, { shape: number[]; data: Float32Array }>();
    for (let i = 0; i < 2; i++) {
      tensors.set(`base_model.model.transformer.h.${i}.attn.c_attn.ia3_l`, { shape: [3 * d, 1], data: seq(3 * d, (j) => 0.5 + ((j * 7 + i) % 11) / 10) });
      tensors.set(`base_model.model.transformer.h.${i}.mlp.c_proj.ia3_l`, { shape: [1, 64], data: seq(64, (j) => 0.6 + ((j * 5 + i) % 13) / 10) });
    }
    const dir = path.join(tmp, 'gpt2-peft');
    // No feedforward_modules / fan_in_fan_out: PEFT's defaults for gpt2 apply.
    writeFolder(dir, { peft_type: 'IA3', target_modules: ['c_attn', 'mlp.c_proj'] }, tensors);
    const model = CausalLM.create(families.gpt2, { seed: 1 });
    const base = snapshot(model);
    const a = loadAdapter(model, dir);
    const got = logitsOf(model);
    assert.deepEqual([...a.targets].slice(0, 4), ['layers.0.attn.q_proj', 'layers.0.attn.k_proj', 'layers.0.attn.v_proj', 'layers.0.mlp.down_proj']);
    // By hand: q/k/v vectors are the row blocks of c_attn's.
    const ref = CausalLM.create(families.gpt2, { seed: 1 });
    const b = addIa3(ref, { targetModules: ['q_proj', 'k_proj', 'v_proj', 'down_proj'] });
    for (let i = 0; i < 2; i++) {
      const fused = tensors.get(`base_model.model.transformer.h.${i}.attn.c_attn.ia3_l`)!.data;
      ['q', 'k', 'v'].forEach((x, j) => b.weights.get(`layers.${i}.attn.${x}_proj.ia3_l`)!.assign(tf.tensor1d(fused.slice(j * d, (j + 1) * d))));
      b.weights.get(`layers.${i}.mlp.down_proj.ia3_l`)!.assign(tf.tensor1d(tensors.get(`base_model.model.transformer.h.${i}.mlp.c_proj.ia3_l`)!.data));
    }
    assert.equal(maxAbsDiff(got, logitsOf(ref)), 0);
    assert.ok(maxAbsDiff(got, (peft(model).disable(), logitsOf(model))) > 1e-3);
    for (const [k, v] of snapshot(model)) assert.deepEqual(v, base.get(k), k);
    model.dispose();
    ref.dispose();
  });

  it('names the file and tensor of a bad adapter, and leaves the model untouched', async () => {
    const model = CausalLM.create(families.llama, { seed: 1 });
    addIa3(model);
    const dir = path.join(tmp, 'llama-bad');
    await saveAdapter(model, dir);
    const weights = path.join(dir, ADAPTER_WEIGHTS_FILE);
    const good = new Map([...readSafetensors(weights).tensors].map(([k, e]) => [k, { shape: [...e.shape], data: e.read().data as Float32Array }]));
    const config = JSON.parse(fs.readFileSync(path.join(dir, ADAPTER_CONFIG_FILE), 'utf8'));
    const fresh = CausalLM.create(families.llama, { seed: 1 });
    const before = tf.memory().numTensors;
    const key = 'base_model.model.model.layers.1.mlp.down_proj.ia3_l';
    const cases: [Record<string, unknown>, Map<string, { shape: number[]; data: Float32Array }>, RegExp][] = [
      [config, new Map([...good].filter(([k]) => k !== key)), /missing tensor "base_model\.model\.model\.layers\.1\.mlp\.down_proj\.ia3_l" \(ia3_l of layers\.1\.mlp\.down_proj, a feed-forward module/],
      [config, new Map([...good, [key, { shape: [64, 1], data: new Float32Array(64) }]]), /tensor "base_model\.model\.model\.layers\.1\.mlp\.down_proj\.ia3_l" has shape \[64,1\] but this model needs \[1,64\]/],
      [config, new Map([...good, ['base_model.model.model.layers.0.self_attn.q_proj.ia3_l', { shape: [32, 1], data: new Float32Array(32) }]]), /unexpected tensors "base_model\.model\.model\.layers\.0\.self_attn\.q_proj\.ia3_l"/],
      [{ ...config, feedforward_modules: ['up_proj'] }, good, /adapter_config\.json: feedforward_modules entry "up_proj" matches no targeted linear layer/],
      [{ ...config, target_modules: ['c_attn'] }, good, /adapter_config\.json: target_modules entry "c_attn" matches no linear layer of this llama model/],
    ];
    for (const [c, t, message] of cases) {
      writeFolder(dir, c, t);
      assert.throws(() => loadAdapter(fresh, dir), (e: Error) => message.test(e.message) && e.message.includes(dir), String(message));
    }
    assert.deepEqual(peft(fresh).names, []);
    assert.equal(tf.memory().numTensors, before);
    model.dispose();
    fresh.dispose();
  });
});
