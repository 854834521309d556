import { strict as assert } from 'assert';
import * as tf from '@tensorflow/tfjs';
import { CausalLM } from '../../src/model';
import { generate } from '../../src/model/generate';
import { Trainer } from '../../src/train/trainer';
import { TokenWindows, causalLmObjective } from '../../src/train/causal-lm';
import { adapterSize, peft } from '../../src/peft/peft';
import { BottleneckAdapter, addBottleneck, bottleneckDefaults } from '../../src/peft/bottleneck';
import { addIa3 } from '../../src/peft/ia3';
import { baseWeights, logitsOf as logitsAt, pretrained, probeRows, task, tinyFamilies } from './fixtures';
import { engineReady, maxAbsDiff } from '../helpers';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { readSafetensors, writeSafetensors } from '../../src/io/safetensors';
import { ADAPTER_CONFIG_FILE, ADAPTER_WEIGHTS_FILE, loadAdapter, saveAdapter } from '../../src/peft/io';

const families = tinyFamilies();


const logitsOf = (model: CausalLM, options: { training?: boolean; seed?: number } = {}) => logitsAt(model, probeRows, options);

const snapshot = baseWeights;

/** Gives every adapter weight random values, so the adapter does something measurable. */
function randomize(weights: ReadonlyMap<string, tf.Variable>, seed: number): void {
  let s = seed;
  for (const v of weights.values()) tf.tidy(() => v.assign(tf.randomNormal(v.shape, 0, 0.3, 'float32', s++)));
}

/** Base-linear + bottleneck, by hand: y + up(silu(down(y))). */
function byHand(a: BottleneckAdapter, path: string, y: tf.Tensor2D): tf.Tensor2D {
  const w = (k: string) => a.weights.get(`${path}.${k}`)!;
  const h = tf.add(tf.matMul(y, w('adapter_down.weight') as tf.Tensor2D), w('adapter_down.bias'));
  const act = tf.mul(h, tf.sigmoid(h)) as tf.Tensor2D;
  return tf.add(y, tf.add(tf.matMul(act, w('adapter_up.weight') as tf.Tensor2D), w('adapter_up.bias'))) as tf.Tensor2D;
}

describe('peft: bottleneck adapters', () => {
  before(engineReady);

  for (const [family, cfg] of Object.entries(families)) {
    it(`${family}: exact trainable parameter counts`, () => {
      const model = CausalLM.create(cfg, { seed: 1 });
      // Default: m = 32 / 16 = 2 on o_proj and down_proj of both blocks, each d·m + m + m·d + d.
      const a = addBottleneck(model);
      assert.equal(a.size, 2);
      assert.deepEqual(a.targets, ['layers.0.attn.o_proj', 'layers.0.mlp.down_proj', 'layers.1.attn.o_proj', 'layers.1.mlp.down_proj']);
      assert.equal(adapterSize(model, a).trainable, 4 * (32 * 2 + 2 + 2 * 32 + 32));
      assert.equal(model.paramCount(true), 4 * 162, 'only the adapter trains');
      assert.deepEqual(a.weights.get('layers.0.attn.o_proj.adapter_down.weight')!.shape, [32, 2]);
      assert.deepEqual(a.weights.get('layers.0.attn.o_proj.adapter_up.weight')!.shape, [2, 32]);
      // Width override, one placement, one block left out.
      const b = addBottleneck(model, { bottleneckSize: 8, placement: 'attention', leaveOut: [1] }, 'small');
      assert.deepEqual(b.targets, ['layers.0.attn.o_proj']);
      assert.equal(adapterSize(model, b).trainable, 32 * 8 + 8 + 8 * 32 + 32);
      const c = addBottleneck(model, { reductionFactor: 4, placement: 'mlp' }, 'mlp');
      assert.equal(adapterSize(model, c).trainable, 2 * (32 * 8 + 8 + 8 * 32 + 32));
      assert.deepEqual(c.targets, ['layers.0.mlp.down_proj', 'layers.1.mlp.down_proj']);
      model.dispose();
    });

    it(`${family}: fresh adapter is an exact no-op; trains with the Trainer; base untouched; disable and KV cache`, async () => {
      const model = await pretrained(cfg);
      const base = logitsOf(model);
      const weights = snapshot(model);
      addBottleneck(model, { bottleneckSize: 8 });
      assert.equal(maxAbsDiff(logitsOf(model), base), 0, 'fresh adapter changes logits');
      const trainer = new Trainer(model, causalLmObjective, new TokenWindows(task(2000), 16, 8, 3), { lr: 3e-2, maxSteps: 20 });
      const counts: number[] = [];
      trainer.on('step', () => counts.push(tf.memory().numTensors));
      const losses = (await trainer.train()).history.map((h) => h.loss);
      trainer.dispose();
      const mean = (xs: number[]) => xs.reduce((s, x) => s + x, 0) / xs.length;
      assert.ok(mean(losses.slice(-4)) < mean(losses.slice(0, 4)) - 0.3, `loss ${losses[0]} → ${losses.at(-1)}`);
      assert.equal(new Set(counts.slice(1)).size, 1, `tensor counts ${counts}`);
      for (const [k, v] of weights) assert.equal(maxAbsDiff(model.weight(k).dataSync(), v), 0, `base weight ${k} changed`);
      assert.ok(maxAbsDiff(logitsOf(model), base) > 1e-3, 'trained adapter changes logits');
      peft(model).disable();
      assert.equal(maxAbsDiff(logitsOf(model), base), 0, 'disabled adapter');
      peft(model).enable();
      const prompt = [1, 2, 3];
      const cached = generate(model, prompt, { maxNewTokens: 20, useCache: true });
      assert.deepEqual(cached, generate(model, prompt, { maxNewTokens: 20, useCache: false }));
      const sampled = { maxNewTokens: 20, doSample: true, seed: 3 };
      assert.deepEqual(generate(model, prompt, { ...sampled, useCache: true }), generate(model, prompt, { ...sampled, useCache: false }));
      model.dispose();
    });
  }

  it('computes y + up(act(down(y))) on the wrapped layers', () => {
    const model = CausalLM.create(families.gpt2, { seed: 2 });
    const a = addBottleneck(model, { bottleneckSize: 4 });
    randomize(a.weights, 10);
    const path = 'layers.1.mlp.down_proj';
    tf.tidy(() => {
      const x = tf.randomNormal([5, 64], 0, 1, 'float32', 1) as tf.Tensor2D;
      const base = tf.add(tf.matMul(x, model.weight(`${path}.weight`) as tf.Tensor2D), model.weight(`${path}.bias`)) as tf.Tensor2D;
      assert.ok(maxAbsDiff(model.linear(path, x).dataSync(), byHand(a, path, base).dataSync()) < 1e-5);
      // Unwrapped layers run the base.
      const q = 'layers.1.attn.q_proj';
      const h = tf.randomNormal([5, 32], 0, 1, 'float32', 2) as tf.Tensor2D;
      assert.equal(maxAbsDiff(model.linear(q, h).dataSync(), tf.add(tf.matMul(h, model.weight(`${q}.weight`) as tf.Tensor2D), model.weight(`${q}.bias`)).dataSync()), 0);
    });
    model.dispose();
  });

  it('stacks with another adapter: use([a, b]) runs b on top of a; disable gives the base', () => {
    const model = CausalLM.create(families.llama, { seed: 3 });
    const base = logitsOf(model);
    const a = addBottleneck(model, { bottleneckSize: 4 }, 'a');
    const b = addBottleneck(model, { bottleneckSize: 4, nonLinearity: 'silu' }, 'b');
    randomize(a.weights, 20);
    randomize(b.weights, 40);
    const p = peft(model);
    p.use(['a', 'b']);
    const path = 'layers.0.attn.o_proj';
    tf.tidy(() => {
      const x = tf.randomNormal([3, 32], 0, 1, 'float32', 5) as tf.Tensor2D;
      const y = tf.matMul(x, model.weight(`${path}.weight`) as tf.Tensor2D) as tf.Tensor2D;
      assert.ok(maxAbsDiff(model.linear(path, x).dataSync(), byHand(b, path, byHand(a, path, y)).dataSync()) < 1e-5);
    });
    assert.equal(model.paramCount(true), adapterSize(model, a).trainable + adapterSize(model, b).trainable);
    const both = logitsOf(model);
    p.use('a');
    const onlyA = logitsOf(model);
    assert.ok(maxAbsDiff(both, onlyA) > 1e-3 && maxAbsDiff(onlyA, base) > 1e-3);
    // With IA3 on other layers.
    const ia3 = addIa3(model, {}, 'ia3');
    randomize(ia3.weights, 60);
    p.use(['a', 'ia3']);
    const mixed = logitsOf(model);
    assert.ok(maxAbsDiff(mixed, onlyA) > 1e-3);
    p.disable();
    assert.equal(maxAbsDiff(logitsOf(model), base), 0);
    model.dispose();
  });

  it('adapter dropout: only while training, deterministic for a seed', () => {
    const model = CausalLM.create(families.llama, { seed: 4 });
    const a = addBottleneck(model, { bottleneckSize: 4, dropout: 0.5 });
    randomize(a.weights, 7);
    const plain = logitsOf(model);
    assert.equal(maxAbsDiff(logitsOf(model, { training: false, seed: 1 }), plain), 0, 'no dropout at inference');
    assert.equal(maxAbsDiff(logitsOf(model, { training: true }), plain), 0, 'no dropout without a seed');
    const s1 = logitsOf(model, { training: true, seed: 1 });
    assert.equal(maxAbsDiff(logitsOf(model, { training: true, seed: 1 }), s1), 0, 'same seed, same masks');
    assert.ok(maxAbsDiff(logitsOf(model, { training: true, seed: 2 }), s1) > 1e-4, 'other seed, other masks');
    assert.ok(maxAbsDiff(s1, plain) > 1e-4);
    model.dispose();
  });

  it('peftConfig uses AdapterHub field names', () => {
    const model = CausalLM.create(families.llama, { seed: 1 });
    const a = addBottleneck(model);
    assert.deepEqual(a.peftConfig(), {
      peft_type: 'BOTTLENECK', task_type: 'CAUSAL_LM', architecture: 'bottleneck', mh_adapter: true, output_adapter: true,
      reduction_factor: 16, bottleneck_size: 2, non_linearity: 'swish', original_ln_before: false, original_ln_after: true,
      residual_before_ln: true, init_weights: 'mam_adapter', is_parallel: false, scaling: 1, dropout: 0, leave_out: [],
    });
    const b = addBottleneck(model, { bottleneckSize: 8, placement: 'mlp', nonLinearity: 'relu' }, 'b');
    assert.deepEqual(
      (({ mh_adapter, output_adapter, reduction_factor, bottleneck_size, non_linearity }) => ({ mh_adapter, output_adapter, reduction_factor, bottleneck_size, non_linearity }))(b.peftConfig()),
      { mh_adapter: false, output_adapter: true, reduction_factor: 4, bottleneck_size: 8, non_linearity: 'relu' });
    assert.ok(Object.isFrozen(bottleneckDefaults));
    model.dispose();
  });

  it('rejects bad configs naming the option, leaking nothing; remove frees every tensor', () => {
    const model = CausalLM.create(families.llama, { seed: 1 });
    const before = tf.memory().numTensors;
    const bad: [Record<string, unknown>, RegExp][] = [
      [{ reductionFactor: 0 }, /BottleneckConfig\.reductionFactor must be > 0/],
      [{ reductionFactor: 64 }, /BottleneckConfig\.reductionFactor leaves no bottleneck for dModel 32/],
      [{ bottleneckSize: 2.5 }, /BottleneckConfig\.bottleneckSize/],
      [{ nonLinearity: 'swish' }, /BottleneckConfig\.nonLinearity must be one of relu, gelu, tanh, silu/],
      [{ placement: 'ffn' }, /BottleneckConfig\.placement/],
      [{ dropout: 1 }, /BottleneckConfig\.dropout/],
      [{ leaveOut: [2] }, /BottleneckConfig\.leaveOut/],
      [{ leaveOut: [0, 1] }, /BottleneckConfig\.leaveOut leaves out every block/],
      [{ reduction_factor: 8 }, /bottleneck: unknown option "reduction_factor"; did you mean "reductionFactor"\?/],
    ];
    for (const [config, message] of bad) assert.throws(() => addBottleneck(model, config as never), message);
    assert.throws(() => addBottleneck(model, {}, 'bad name'), /adapter name/);
    assert.equal(tf.memory().numTensors, before);
    assert.deepEqual(peft(model).names, []);
    addBottleneck(model, { bottleneckSize: 4 });
    peft(model).remove('default');
    assert.equal(tf.memory().numTensors, before);
    assert.equal(model.adapterParams.size, 0);
    model.dispose();
  });
});

describe('peft: bottleneck files', () => {
  let tmp: string;
  before(async () => {
    await engineReady();
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'tunelab-bottleneck-io-'));
  });
  after(() => fs.rmSync(tmp, { recursive: true, force: true }));

  it('round trip keeps placement, width, nonlinearity, scaling and leave_out; keys base_model.model.<key>', async () => {
    const model = CausalLM.create(families.gpt2, { seed: 1 });
    const a = addBottleneck(model, { bottleneckSize: 3, placement: 'attention', nonLinearity: 'tanh', scaling: 0.5, leaveOut: [0] });
    randomize(a.weights, 4);
    const want = logitsOf(model);
    const dir = path.join(tmp, 'rt');
    await saveAdapter(model, dir);
    const st = readSafetensors(path.join(dir, ADAPTER_WEIGHTS_FILE)).tensors;
    assert.deepEqual([...st.keys()].sort(), ['adapter_down.bias', 'adapter_down.weight', 'adapter_up.bias', 'adapter_up.weight'].map((w) => `base_model.model.layers.1.attn.o_proj.${w}`).sort());
    assert.deepEqual(st.get('base_model.model.layers.1.attn.o_proj.adapter_down.weight')!.shape, [32, 3]);
    const fresh = CausalLM.create(families.gpt2, { seed: 1 });
    const b = loadAdapter(fresh, dir) as BottleneckAdapter;
    assert.ok(b instanceof BottleneckAdapter);
    assert.deepEqual(b.config, { ...bottleneckDefaults, reductionFactor: 32 / 3, bottleneckSize: 3, placement: 'attention', nonLinearity: 'tanh', scaling: 0.5, leaveOut: [0] });
    assert.ok(maxAbsDiff(logitsOf(fresh), want) < 1e-6);
    model.dispose();
    fresh.dispose();
  });

  it('names the file and tensor of a bad adapter, leaking nothing', async () => {
    const model = CausalLM.create(families.llama, { seed: 1 });
    addBottleneck(model, { bottleneckSize: 4 });
    const dir = path.join(tmp, 'bad');
    await saveAdapter(model, dir);
    const weights = path.join(dir, ADAPTER_WEIGHTS_FILE);
    const good = new Map([...readSafetensors(weights).tensors].map(([k, e]) => [k, { shape: [...e.shape], data: e.read().data as Float32Array }]));
    const config = JSON.parse(fs.readFileSync(path.join(dir, ADAPTER_CONFIG_FILE), 'utf8'));
    const key = 'base_model.model.layers.1.mlp.down_proj.adapter_up.weight';
    const fresh = CausalLM.create(families.llama, { seed: 1 });
    const before = tf.memory().numTensors;
    const cases: [Record<string, unknown>, Map<string, { shape: number[]; data: Float32Array }>, RegExp][] = [
      [config, new Map([...good].filter(([k]) => k !== key)), /adapter_model\.safetensors: missing tensor "base_model\.model\.layers\.1\.mlp\.down_proj\.adapter_up\.weight"/],
      [config, new Map([...good, [key, { shape: [4, 16], data: new Float32Array(64) }]]), /tensor "base_model\.model\.layers\.1\.mlp\.down_proj\.adapter_up\.weight" has shape \[4,16\] but this model needs \[4,32\]/],
      [{ ...config, output_adapter: false }, good, /unexpected tensors "base_model\.model\.layers\.0\.mlp\.down_proj\.adapter_down\.bias", .*… \(8\)/],
      [{ ...config, non_linearity: 'softmax' }, good, /adapter_config\.json: "non_linearity" must be one of relu, gelu_new, tanh, swish/],
      [{ ...config, leave_out: [5] }, good, /adapter_config\.json: BottleneckConfig\.leaveOut/],
      [{ ...config, is_parallel: true }, good, /adapter_config\.json: "is_parallel" is not supported/],
    ];
    for (const [c, t, message] of cases) {
      fs.writeFileSync(path.join(dir, ADAPTER_CONFIG_FILE), JSON.stringify(c));
      writeSafetensors(weights, t);
      assert.throws(() => loadAdapter(fresh, dir), (e: Error) => message.test(e.message) && e.message.includes(dir), String(message));
    }
    assert.deepEqual(peft(fresh).names, []);
    assert.equal(fresh.adapterParams.size, 0);
    assert.equal(tf.memory().numTensors, before);
    model.dispose();
    fresh.dispose();
  });
});
