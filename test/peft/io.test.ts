import { strict as assert } from 'assert';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import * as tf from '@tensorflow/tfjs';
import { CausalLM, ModelConfig } from '../../src/model';
import { readSafetensors, writeSafetensors, TensorInput } from '../../src/io/safetensors';
import { Adapter, peft } from '../../src/peft/peft';
import { LoraAdapter, addLora, mergeLora } from '../../src/peft/lora';
import { ADAPTER_CONFIG_FILE, ADAPTER_WEIGHTS_FILE, TUNELAB_ADAPTER_FILE, adapterLoaders, loadAdapter, registerAdapterLoader, saveAdapter } from '../../src/peft/io';
import { engineReady, ids, maxAbsDiff } from '../helpers';

const llama: Partial<ModelConfig> = { family: 'llama', vocabSize: 64, dModel: 32, nLayers: 2, nHeads: 4, nKvHeads: 2, dFf: 64, contextLength: 16 };
const gpt2: Partial<ModelConfig> = { family: 'gpt2', vocabSize: 64, dModel: 32, nLayers: 2, nHeads: 4, dFf: 64, contextLength: 16 };
const rows = [[1, 5, 9, 2, 7, 3, 11, 4]];
const logits = (m: CausalLM) => tf.tidy(() => m.forward(ids(rows)).dataSync() as Float32Array).slice();
function perturb(a: Adapter, seed: number): void {
  for (const [k, v] of a.weights) if (!k.endsWith('lora_A')) v.assign(tf.randomNormal(v.shape, 0, 0.05, 'float32', seed++));
}
const readJson = (f: string) => JSON.parse(fs.readFileSync(f, 'utf8')) as Record<string, unknown>;
/** Rewrites an adapter file through `edit` (tensors by name). */
function rewrite(dir: string, edit: (t: Map<string, TensorInput>) => void): void {
  const file = path.join(dir, ADAPTER_WEIGHTS_FILE);
  const t = new Map<string, TensorInput>([...readSafetensors(file).tensors].map(([k, e]) => [k, e.read() as TensorInput]));
  edit(t);
  writeSafetensors(file, t);
}

describe('peft/io', () => {
  let tmp: string;
  before(engineReady);
  beforeEach(() => { tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'tunelab-peft-io-')); });
  afterEach(() => fs.rmSync(tmp, { recursive: true, force: true }));

  describe('llama (exactly PEFT)', () => {
    let m: CausalLM;
    let a: LoraAdapter;
    let dir: string;
    beforeEach(async () => {
      m = CausalLM.create(llama, { seed: 1 });
      a = addLora(m, { r: 4, alpha: 16, dropout: 0.05 });
      perturb(a, 1);
      dir = path.join(tmp, 'adapter');
      await saveAdapter(m, dir, 'default', { baseModelNameOrPath: 'models/tiny-llama' });
    });
    afterEach(() => m.dispose());

    it('writes PEFT keys, shapes [r, in] / [out, r], values transposed, and config fields', () => {
      const st = readSafetensors(path.join(dir, ADAPTER_WEIGHTS_FILE));
      const keys = [0, 1].flatMap((i) => ['q', 'v'].flatMap((x) => ['A', 'B'].map((ab) => `base_model.model.model.layers.${i}.self_attn.${x}_proj.lora_${ab}.weight`)));
      assert.deepEqual([...st.tensors.keys()].sort(), keys.sort());
      const t = (k: string) => st.tensors.get(`base_model.model.model.layers.1.self_attn.${k}.weight`)!;
      assert.deepEqual(t('q_proj.lora_A').shape, [4, 32]);
      assert.deepEqual(t('q_proj.lora_B').shape, [32, 4]);
      assert.deepEqual(t('v_proj.lora_A').shape, [4, 32]);
      assert.deepEqual(t('v_proj.lora_B').shape, [16, 4]); // nKvHeads·hd = 2·8
      assert.equal(t('v_proj.lora_B').dtype, 'F32');
      const ours = tf.tidy(() => tf.transpose(a.weights.get('layers.1.attn.v_proj.lora_B')!).dataSync());
      assert.deepEqual(t('v_proj.lora_B').read().data, ours);
      const c = readJson(path.join(dir, ADAPTER_CONFIG_FILE));
      assert.deepEqual(
        { ...c, tunelab: undefined },
        {
          peft_type: 'LORA', task_type: 'CAUSAL_LM', r: 4, lora_alpha: 16, lora_dropout: 0.05, target_modules: ['q_proj', 'v_proj'], bias: 'none',
          use_rslora: false, fan_in_fan_out: false, init_lora_weights: true, inference_mode: true, base_model_name_or_path: 'models/tiny-llama',
          modules_to_save: null, layers_to_transform: null, layers_pattern: null, rank_pattern: {}, alpha_pattern: {}, use_dora: false, tunelab: undefined,
        },
      );
    });

    it('loads into a fresh copy of the base with the same logits', () => {
      const want = logits(m);
      const fresh = CausalLM.create(llama, { seed: 1 });
      const base = logits(fresh);
      const b = loadAdapter(fresh, dir) as LoraAdapter;
      assert.ok(b instanceof LoraAdapter);
      assert.deepEqual([b.config.r, b.config.alpha, b.config.dropout, b.scale], [4, 16, 0.05, 4]);
      assert.ok(maxAbsDiff(logits(fresh), want) < 1e-6);
      assert.ok(maxAbsDiff(logits(fresh), base) > 1e-3);
      fresh.dispose();
    });

    it('refuses to overwrite without overwrite: true, naming the file', async () => {
      await assert.rejects(saveAdapter(m, dir), (e: Error) => e.message.includes(path.join(dir, ADAPTER_CONFIG_FILE)) || e.message.includes(path.join(dir, ADAPTER_WEIGHTS_FILE)));
      await saveAdapter(m, dir, 'default', { overwrite: true });
      assert.equal(fs.readdirSync(dir).sort().join(), [ADAPTER_CONFIG_FILE, ADAPTER_WEIGHTS_FILE, TUNELAB_ADAPTER_FILE].sort().join(), 'no temp files left');
    });

    it('names the file and tensor of a malformed adapter, and leaves the model untouched', () => {
      const key = 'base_model.model.model.layers.1.self_attn.v_proj.lora_B.weight';
      const fresh = CausalLM.create(llama, { seed: 1 });
      rewrite(dir, (t) => t.delete(key));
      assert.throws(() => loadAdapter(fresh, dir), (e: Error) => e.message.includes(ADAPTER_WEIGHTS_FILE) && e.message.includes(`missing tensor "${key}"`));
      rewrite(dir, (t) => t.set(key, { shape: [16, 3], data: new Float32Array(48) }));
      assert.throws(() => loadAdapter(fresh, dir), (e: Error) => e.message.includes(ADAPTER_WEIGHTS_FILE) && e.message.includes(`"${key}" has shape [16,3]`) && e.message.includes('[16,4]'));
      rewrite(dir, (t) => { t.set(key, { shape: [16, 4], data: new Float32Array(64) }); t.set('base_model.model.extra.weight', { shape: [1], data: new Float32Array(1) }); });
      assert.throws(() => loadAdapter(fresh, dir), /unexpected tensors "base_model\.model\.extra\.weight"/);
      assert.equal(peft(fresh).names.length, 0);
      assert.equal(fresh.adapterParams.size, 0);
      fresh.dispose();
    });

    it('rejects a different base model with a clear error', () => {
      const other = CausalLM.create({ ...llama, dModel: 48, nHeads: 4 }, { seed: 1 });
      assert.throws(() => loadAdapter(other, dir), /lora_A\.weight" has shape \[4,32\] but r = 4 on this model needs \[4,48\].*another base model/);
      other.dispose();
    });

    it('reads a PEFT config without tunelab fields and with a regex target_modules', () => {
      const c = readJson(path.join(dir, ADAPTER_CONFIG_FILE));
      delete c.tunelab;
      c.target_modules = 'model\\.layers\\.\\d+\\.self_attn\\.(q|v)_proj';
      fs.writeFileSync(path.join(dir, ADAPTER_CONFIG_FILE), JSON.stringify(c));
      const fresh = CausalLM.create(llama, { seed: 1 });
      loadAdapter(fresh, dir, 'peft');
      assert.ok(maxAbsDiff(logits(fresh), logits(m)) < 1e-6);
      fresh.dispose();
      c.peft_type = 'VERA';
      fs.writeFileSync(path.join(dir, ADAPTER_CONFIG_FILE), JSON.stringify(c));
      assert.throws(() => loadAdapter(m, dir, 'x'), /adapter_config\.json: peft_type "VERA" is not supported/);
    });
  });

  it('writes exact target_modules for a partial regex target (layer 1 only)', async () => {
    const m = CausalLM.create(llama, { seed: 1 });
    perturb(addLora(m, { r: 2, targetModules: /^layers\.1\.attn\.q_proj$/ }), 1);
    await saveAdapter(m, tmp, 'default', { overwrite: true });
    assert.deepEqual(readJson(path.join(tmp, ADAPTER_CONFIG_FILE)).target_modules, ['1.self_attn.q_proj']);
    const fresh = CausalLM.create(llama, { seed: 1 });
    assert.deepEqual((loadAdapter(fresh, tmp) as LoraAdapter).loraTargets, ['layers.1.attn.q_proj']);
    assert.ok(maxAbsDiff(logits(fresh), logits(m)) < 1e-6);
    m.dispose();
    fresh.dispose();
  });

  it('gpt2: HF module names (q/k/v as one block LoRA on c_attn), trained biases, round trip', async () => {
    const m = CausalLM.create(gpt2, { seed: 1 });
    perturb(addLora(m, { r: 2, targetModules: 'all-linear', bias: 'all' }), 1);
    await saveAdapter(m, tmp, 'default', { overwrite: true });
    const c = readJson(path.join(tmp, ADAPTER_CONFIG_FILE));
    assert.deepEqual(c.target_modules, ['c_attn', 'c_proj', 'c_fc']);
    // q, k and v LoRAs of rank 2 → one c_attn LoRA of rank 6, alpha 3·8 keeps the scale α/r.
    assert.deepEqual([c.rank_pattern, c.alpha_pattern], [{ c_attn: 6 }, { c_attn: 24 }]);
    // GPT-2 has two c_proj modules: targeting one needs a longer suffix, as PEFT matches suffixes.
    const other = CausalLM.create(gpt2, { seed: 1 });
    assert.deepEqual(addLora(other, { targetModules: ['o_proj'] }).peftConfig().target_modules, ['attn.c_proj']);
    other.dispose();
    assert.equal(c.fan_in_fan_out, true);
    const st = readSafetensors(path.join(tmp, ADAPTER_WEIGHTS_FILE));
    for (const k of ['transformer.h.0.attn.c_attn.lora_A.weight', 'transformer.h.0.attn.c_attn.bias', 'transformer.h.0.attn.c_proj.lora_B.weight', 'transformer.h.1.mlp.c_fc.lora_B.weight', 'transformer.h.1.mlp.c_proj.bias']) {
      assert.ok(st.tensors.has(`base_model.model.${k}`), k);
    }
    assert.deepEqual(st.tensors.get('base_model.model.transformer.h.1.mlp.c_fc.lora_B.weight')!.shape, [64, 2]);
    assert.deepEqual(st.tensors.get('base_model.model.transformer.h.0.attn.c_attn.lora_A.weight')!.shape, [6, 32]);
    assert.deepEqual(st.tensors.get('base_model.model.transformer.h.0.attn.c_attn.lora_B.weight')!.shape, [96, 6]);
    // The bias in the file is the trained one: base + delta (the base is all zeros at init).
    const delta = peft(m).get('default').weights.get('layers.1.mlp.down_proj.bias_delta')!.dataSync();
    assert.ok(maxAbsDiff(st.tensors.get('base_model.model.transformer.h.1.mlp.c_proj.bias')!.read().data, delta) < 1e-7);
    const fresh = CausalLM.create(gpt2, { seed: 1 });
    loadAdapter(fresh, tmp);
    assert.ok(maxAbsDiff(logits(fresh), logits(m)) < 1e-5);
    m.dispose();
    fresh.dispose();
  });

  it("gpt2: loads PEFT's fused c_attn LoRA exactly (q/k/v share A, B split by rows)", () => {
    const r = 2, d = 32;
    const A = tf.randomNormal([r, d], 0, 0.1, 'float32', 1);
    const B = tf.randomNormal([3 * d, r], 0, 0.1, 'float32', 2);
    const cBias = tf.randomNormal([3 * d], 0, 0.1, 'float32', 3);
    const key = (i: number, leaf: string) => `base_model.model.transformer.h.${i}.attn.c_attn.${leaf}`;
    const tensors: Record<string, TensorInput> = {};
    for (const i of [0, 1]) {
      tensors[key(i, 'lora_A.weight')] = { shape: A.shape, data: A.dataSync() as Float32Array };
      tensors[key(i, 'lora_B.weight')] = { shape: B.shape, data: B.dataSync() as Float32Array };
      tensors[key(i, 'bias')] = { shape: cBias.shape, data: cBias.dataSync() as Float32Array };
    }
    writeSafetensors(path.join(tmp, ADAPTER_WEIGHTS_FILE), tensors);
    fs.writeFileSync(path.join(tmp, ADAPTER_CONFIG_FILE), JSON.stringify({ peft_type: 'LORA', r, lora_alpha: 4, target_modules: ['c_attn'], bias: 'lora_only', fan_in_fan_out: true }));
    const m = CausalLM.create(gpt2, { seed: 1 });
    const w0 = ['q', 'k', 'v'].map((x) => m.weight(`layers.1.attn.${x}_proj.weight`).dataSync().slice());
    const a = loadAdapter(m, tmp) as LoraAdapter;
    assert.deepEqual(a.biasTargets, ['layers.0.attn.q_proj', 'layers.0.attn.k_proj', 'layers.0.attn.v_proj', 'layers.1.attn.q_proj', 'layers.1.attn.k_proj', 'layers.1.attn.v_proj']);
    mergeLora(m);
    // PEFT's fused update, in tunelab's [in, out] layout: scale · Aᵀ·Bᵀ, columns q | k | v.
    const want = tf.tidy(() => tf.split(tf.mul(tf.matMul(A, B, true, true), 2), 3, 1).map((t) => t.dataSync()));
    ['q', 'k', 'v'].forEach((x, j) => {
      const got = tf.tidy(() => tf.sub(m.weight(`layers.1.attn.${x}_proj.weight`), tf.tensor(w0[j], [d, d])).dataSync());
      assert.ok(maxAbsDiff(got, want[j]) < 1e-6, x);
      assert.ok(maxAbsDiff(m.weight(`layers.1.attn.${x}_proj.bias`).dataSync(), cBias.dataSync().slice(j * d, (j + 1) * d)) < 1e-7);
    });
    tf.dispose([A, B, cBias]);
    m.dispose();
  });

  it('saves other methods under base_model.model.<key> and dispatches loading on peft_type', async () => {
    const m = CausalLM.create(llama, { seed: 1 });
    const v = tf.variable(tf.ones([4, 32]));
    const fake: Adapter = { peftType: 'PROMPT_TUNING', weights: new Map([['prompt_embeddings', v]]), targets: [], peftConfig: () => ({ peft_type: 'PROMPT_TUNING', num_virtual_tokens: 4 }) };
    peft(m).add('pt', fake);
    await saveAdapter(m, tmp, 'pt', { overwrite: true });
    const st = readSafetensors(path.join(tmp, ADAPTER_WEIGHTS_FILE));
    assert.deepEqual([...st.tensors.keys()], ['base_model.model.prompt_embeddings']);
    assert.equal(readJson(path.join(tmp, ADAPTER_CONFIG_FILE)).inference_mode, true);
    let called = '';
    const real = adapterLoaders.get('PROMPT_TUNING');
    registerAdapterLoader('PROMPT_TUNING', (_model, file, name) => { called = `${name}:${[...file.tensors.keys()]}`; return fake; });
    try {
      assert.equal(loadAdapter(m, tmp, 'again'), fake);
      assert.equal(called, 'again:base_model.model.prompt_embeddings');
    } finally {
      if (real) registerAdapterLoader('PROMPT_TUNING', real);
      else adapterLoaders.delete('PROMPT_TUNING');
    }
    m.dispose();
  });
});
