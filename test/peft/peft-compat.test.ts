/**
 * Adapter folders read the way PEFT reads them (issue 20 §4): the rules are in `./peft-rules`, each
 * with the PEFT / transformers source file it comes from.
 */
import { strict as assert } from 'assert';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import * as tf from '@tensorflow/tfjs';
import { CausalLM, ModelConfig, modelConfig } from '../../src/model';
import { saveModel } from '../../src/io/checkpoint';
import { readSafetensors, writeSafetensors } from '../../src/io/safetensors';
import type { HostTensor } from '../../src/io/hf';
import { peft } from '../../src/peft/peft';
import { addLora, LoraAdapter } from '../../src/peft/lora';
import { addIa3 } from '../../src/peft/ia3';
import { addPromptTuning } from '../../src/peft/prompt';
import { addPrefixTuning } from '../../src/peft/prefix';
import { addBottleneck } from '../../src/peft/bottleneck';
import { addLoraMoe } from '../../src/peft/moe';
import { ADAPTER_CONFIG_FILE, ADAPTER_WEIGHTS_FILE, TUNELAB_ADAPTER_FILE, loadAdapter, saveAdapter } from '../../src/peft/io';
import { engineReady, ids, maxAbsDiff } from '../helpers';
import { gpt2Logits, gpt2Modules, peftConfigFromJson, peftLoraLayers } from './peft-rules';

const gpt2 = modelConfig({ family: 'gpt2', vocabSize: 64, dModel: 16, nLayers: 2, nHeads: 2, contextLength: 16 });
const llama: Partial<ModelConfig> = { family: 'llama', vocabSize: 64, dModel: 16, nLayers: 2, nHeads: 2, nKvHeads: 1, dFf: 32, contextLength: 16 };
const row = [3, 14, 15, 9, 26, 5, 35, 8];
const tunelabLogits = (m: CausalLM) => tf.tidy(() => [...m.forward(ids([row])).dataSync()]);
const readJson = (f: string) => JSON.parse(fs.readFileSync(f, 'utf8')) as Record<string, unknown>;

/** Random non-zero values in every adapter weight, so a dropped or misplaced block shows in the logits. */
function perturb(model: CausalLM, name = 'default'): void {
  let seed = 1;
  for (const [k, v] of peft(model).get(name).weights) {
    tf.tidy(() => v.assign(tf.add(v, tf.randomNormal(v.shape, 0, k.includes('ia3') ? 0.3 : 0.2, 'float32', seed++))));
  }
}

/** The saved model as transformers loads it into GPT2LMHeadModel (`transformer.` is its base-model prefix). */
function hfStateDict(dir: string): Map<string, HostTensor> {
  const out = new Map<string, HostTensor>();
  for (const [k, e] of readSafetensors(path.join(dir, 'model.safetensors')).tensors) {
    const t = e.read();
    out.set(k.startsWith('transformer.') || k.startsWith('lm_head') ? k : `transformer.${k}`, { shape: t.shape, data: t.data as Float32Array });
  }
  return out;
}

describe('peft: folders PEFT loads as they are', () => {
  let tmp: string;
  before(async () => {
    await engineReady();
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'tunelab-peft-compat-'));
  });
  after(() => fs.rmSync(tmp, { recursive: true, force: true }));

  it('adapter_config.json of LoRA, IA3, prefix and prompt tuning passes PeftConfig.from_peft_type with no warning; tunelab\'s metadata is a separate file', async () => {
    const cases: [string, (m: CausalLM) => void][] = [
      ['lora', (m) => addLora(m, { r: 4, targetModules: 'all-linear', bias: 'lora_only', useRslora: true })],
      ['ia3', (m) => addIa3(m)],
      ['prefix', (m) => addPrefixTuning(m, { numVirtualTokens: 3 })],
      ['prompt', (m) => addPromptTuning(m, { numVirtualTokens: 3 })],
    ];
    for (const family of [llama, gpt2]) {
      for (const [label, add] of cases) {
        const m = CausalLM.create(family, { seed: 1 });
        add(m);
        const dir = path.join(tmp, `${family.family}-${label}`);
        await saveAdapter(m, dir, 'default', { baseModelNameOrPath: 'models/tiny-llama' });
        const config = readJson(path.join(dir, ADAPTER_CONFIG_FILE));
        assert.deepEqual(peftConfigFromJson(config).warnings, [], `${family.family} ${label}`);
        assert.equal(config.tunelab, undefined);
        if (label === 'lora' || label === 'ia3') assert.ok(fs.existsSync(path.join(dir, TUNELAB_ADAPTER_FILE)), `${label}: metadata kept beside`);
        m.dispose();
      }
    }
  });

  it('BOTTLENECK and LORA_MOE are tunelab\'s own: PEFT has no such peft_type (documented, not hidden)', async () => {
    for (const [label, add] of [['bottleneck', addBottleneck], ['moe', addLoraMoe]] as const) {
      const m = CausalLM.create(llama, { seed: 1 });
      add(m);
      const dir = path.join(tmp, `own-${label}`);
      await saveAdapter(m, dir);
      assert.throws(() => peftConfigFromJson(readJson(path.join(dir, ADAPTER_CONFIG_FILE))), /KeyError/);
      const fresh = CausalLM.create(llama, { seed: 1 });
      loadAdapter(fresh, dir);
      assert.equal(maxAbsDiff(tunelabLogits(fresh), tunelabLogits(m)), 0);
      fresh.dispose();
      m.dispose();
    }
  });

  it('prompt tuning writes PEFT\'s PromptTuningInit values: TEXT with a tokenizer path, SAMPLE_VOCAB, RANDOM', async () => {
    const tok = { encode: (t: string) => [...t].map((ch) => ch.charCodeAt(0) % 64) };
    const save = async (label: string, init: Parameters<typeof addPromptTuning>[1], base?: string) => {
      const m = CausalLM.create(llama, { seed: 1 });
      addPromptTuning(m, init);
      const dir = path.join(tmp, `prompt-${label}`);
      await saveAdapter(m, dir, 'default', { baseModelNameOrPath: base });
      m.dispose();
      return readJson(path.join(dir, ADAPTER_CONFIG_FILE));
    };
    const text = await save('text', { numVirtualTokens: 4, initFrom: { text: 'Answer:', tokenizer: tok } }, 'runs/base');
    assert.deepEqual([text.prompt_tuning_init, text.prompt_tuning_init_text, text.tokenizer_name_or_path], ['TEXT', 'Answer:', 'runs/base']);
    peftConfigFromJson(text);
    // No tokenizer known: TEXT would be PEFT's ValueError, so the (irrelevant once trained) init is RANDOM.
    const noTok = await save('text-no-tokenizer', { numVirtualTokens: 4, initFrom: { text: 'Answer:', tokenizer: tok } });
    assert.equal(noTok.prompt_tuning_init, 'RANDOM');
    assert.deepEqual(peftConfigFromJson(noTok).warnings, []);
    assert.throws(() => peftConfigFromJson({ ...noTok, prompt_tuning_init: 'TEXT' }), /tokenizer_name_or_path can't be null/);
    const vocab = await save('vocab', { numVirtualTokens: 4, initFrom: 'sampleVocab' });
    assert.equal(vocab.prompt_tuning_init, 'SAMPLE_VOCAB');
    peftConfigFromJson(vocab);
    // Read old: a folder tunelab wrote before, with RANDOM_DISCRETE, still loads.
    const dir = path.join(tmp, 'prompt-vocab');
    fs.writeFileSync(path.join(dir, ADAPTER_CONFIG_FILE), JSON.stringify({ ...vocab, prompt_tuning_init: 'RANDOM_DISCRETE' }));
    assert.throws(() => peftConfigFromJson(readJson(path.join(dir, ADAPTER_CONFIG_FILE))), /not a valid PromptTuningInit/);
    const m = CausalLM.create(llama, { seed: 1 });
    assert.equal(loadAdapter(m, dir).peftType, 'PROMPT_TUNING');
    m.dispose();
  });

  for (const rslora of [false, true]) {
    it(`GPT-2 LoRA on q/k/v (+ c_proj, c_fc) loads into GPT2LMHeadModel's modules with the same logits${rslora ? ' (rsLoRA)' : ''}`, async () => {
      const m = CausalLM.create(gpt2, { seed: 2 });
      // q and v in layer 0, q/k/v in layer 1, plus the MLP input: c_attn ranks 2r and 3r.
      const lora = addLora(m, { r: 2, alpha: 5, useRslora: rslora, bias: 'lora_only', targetModules: ['layers.0.attn.q_proj', 'layers.0.attn.v_proj', 'layers.1.attn.q_proj', 'layers.1.attn.k_proj', 'layers.1.attn.v_proj', 'layers.0.mlp.up_proj'] });
      perturb(m);
      const want = tunelabLogits(m);
      const dir = path.join(tmp, `gpt2-lora-${rslora}`);
      await saveAdapter(m, dir);
      await saveModel(path.join(dir, 'base'), m); // adapters are not merged into saved weights: this is the base
      const config = readJson(path.join(dir, ADAPTER_CONFIG_FILE));
      assert.deepEqual(peftConfigFromJson(config).warnings, []);
      assert.equal(config.fan_in_fan_out, true, 'PEFT sets it for Conv1D');
      const st = readSafetensors(path.join(dir, ADAPTER_WEIGHTS_FILE)).tensors;
      const layers = peftLoraLayers(config, gpt2Modules(gpt2), st);
      assert.deepEqual(layers.map((l) => [l.module.name, l.r]), [
        ['transformer.h.0.attn.c_attn', 4], ['transformer.h.0.mlp.c_fc', 2], ['transformer.h.1.attn.c_attn', 6],
      ]);
      for (const l of layers) assert.ok(Math.abs(l.scaling - lora.scale) < 1e-9, `${l.module.name}: scaling ${l.scaling} ≠ ${lora.scale}`);
      // PEFT's Conv1D LoRA forward: y = base(x) + (x·lora_Aᵀ)·lora_Bᵀ · scaling.
      const hf = hfStateDict(path.join(dir, 'base'));
      const read = (k: string) => { const t = st.get(k)!.read(); return tf.tensor2d(t.data as Float32Array, t.shape as [number, number]); };
      // PEFT's bias "lora_only" saves the adapted modules' trained biases (c_attn's whole, untrained parts as the base).
      for (const module of ['transformer.h.0.attn.c_attn', 'transformer.h.1.attn.c_attn', 'transformer.h.0.mlp.c_fc']) {
        const t = st.get(`base_model.model.${module}.bias`)!.read();
        hf.set(`${module}.bias`, { shape: t.shape, data: t.data as Float32Array });
      }
      const got = gpt2Logits(gpt2, hf, row, (module, x, y) => {
        const l = layers.find((q) => q.module.name === module);
        if (!l) return y;
        const key = `base_model.model.${module}`;
        return tf.add(y, tf.mul(tf.matMul(tf.matMul(x, read(`${key}.lora_A.weight`), false, true), read(`${key}.lora_B.weight`), false, true), l.scaling)) as tf.Tensor2D;
      });
      const d = maxAbsDiff(got, want);
      assert.ok(d < 1e-4, `PEFT-style GPT-2 logits differ from tunelab's by ${d}`);
      // The adapter matters: without it the same forward is off.
      assert.ok(maxAbsDiff(gpt2Logits(gpt2, hfStateDict(path.join(dir, 'base')), row), want) > 1e-3);
      // And tunelab reads its own folder back to the same adapter (q/k/v LoRAs of rank 2, same logits).
      const fresh = CausalLM.create(gpt2, { seed: 2 });
      const back = loadAdapter(fresh, dir) as LoraAdapter;
      assert.deepEqual([...back.loraTargets], [...lora.loraTargets]);
      assert.equal(back.config.r, 2);
      assert.ok(maxAbsDiff(tunelabLogits(fresh), want) < 1e-5);
      fresh.dispose();
      m.dispose();
    });
  }

  /** PEFT's DoRA Conv1D forward (the rule in ./peft-rules) on `module`, from the adapter file `st` and base state dict `hf`. */
  const peftDora = (st: ReadonlyMap<string, { read(): { shape: number[]; data: unknown } }>, hf: ReadonlyMap<string, HostTensor>, scaling: number) =>
    (module: string, x: tf.Tensor2D, y: tf.Tensor2D): tf.Tensor2D => {
      const key = `base_model.model.${module}`;
      if (!st.has(`${key}.lora_A.weight`)) return y;
      const read = (k: string) => { const t = st.get(k)!.read(); return tf.tensor(t.data as Float32Array, t.shape); };
      const a = read(`${key}.lora_A.weight`) as tf.Tensor2D; // [r, in]
      const b = read(`${key}.lora_B.weight`) as tf.Tensor2D; // [out, r]
      const w = hf.get(`${module}.weight`)!;
      // transpose(W, fan_in_fan_out) [out, in] + scaling·B·A, norm over dim 1.
      const v = tf.add(tf.transpose(tf.tensor2d(w.data, w.shape as [number, number])), tf.mul(tf.matMul(b, a), scaling));
      const g = tf.div(read(`${key}.lora_magnitude_vector`), tf.sqrt(tf.sum(tf.square(v), 1)));
      const base = tf.sub(y, tf.tensor1d(hf.get(`${module}.bias`)!.data));
      const lora = tf.mul(tf.matMul(tf.matMul(x, a, false, true), b, false, true), scaling);
      return tf.add(y, tf.add(tf.mul(tf.sub(g, 1), base), tf.mul(g, lora))) as tf.Tensor2D;
    };

  it('GPT-2 DoRA on q/v (+ c_fc): use_dora, c_attn magnitude [3d]; PEFT\'s DoRA forward on the file gives the same logits', async () => {
    const m = CausalLM.create(gpt2, { seed: 6 });
    const dora = addLora(m, { r: 2, alpha: 3, useDora: true, targetModules: ['layers.0.attn.q_proj', 'layers.0.attn.v_proj', 'layers.1.attn.k_proj', 'layers.0.mlp.up_proj'] });
    perturb(m);
    const want = tunelabLogits(m);
    const dir = path.join(tmp, 'gpt2-dora');
    await saveAdapter(m, dir);
    await saveModel(path.join(dir, 'base'), m);
    const config = readJson(path.join(dir, ADAPTER_CONFIG_FILE));
    assert.deepEqual(peftConfigFromJson(config).warnings, []);
    assert.equal(config.use_dora, true);
    const st = readSafetensors(path.join(dir, ADAPTER_WEIGHTS_FILE)).tensors;
    const layers = peftLoraLayers(config, gpt2Modules(gpt2), st);
    assert.deepEqual(layers.map((l) => [l.module.name, l.r]), [['transformer.h.0.attn.c_attn', 4], ['transformer.h.0.mlp.c_fc', 2], ['transformer.h.1.attn.c_attn', 2]]);
    for (const l of layers) assert.ok(Math.abs(l.scaling - dora.scale) < 1e-9);
    const hf = hfStateDict(path.join(dir, 'base'));
    const d = maxAbsDiff(gpt2Logits(gpt2, hf, row, peftDora(st, hf, dora.scale)), want);
    assert.ok(d < 1e-4, `PEFT-style DoRA logits differ from tunelab's by ${d}`);
    assert.ok(maxAbsDiff(gpt2Logits(gpt2, hf, row), want) > 1e-3);
    m.dispose();
  });

  it('loads PEFT\'s own GPT-2 c_attn DoRA (rank r, shared A, no tunelab metadata) as q/k/v DoRAs with PEFT\'s logits', async () => {
    const m = CausalLM.create(gpt2, { seed: 7 });
    const dir = path.join(tmp, 'peft-dora');
    await saveModel(path.join(dir, 'base'), m);
    const hf = hfStateDict(path.join(dir, 'base'));
    const r = 2, d = gpt2.dModel;
    const tensors = new Map<string, HostTensor>();
    for (let i = 0; i < gpt2.nLayers; i++) {
      const key = `base_model.model.transformer.h.${i}.attn.c_attn`;
      const rand = (shape: number[], seed: number, mean = 0) => tf.tidy(() => ({ shape, data: tf.randomNormal(shape, mean, 0.3, 'float32', seed).dataSync() as Float32Array }));
      tensors.set(`${key}.lora_A.weight`, rand([r, d], 10 * i + 1));
      tensors.set(`${key}.lora_B.weight`, rand([3 * d, r], 10 * i + 2));
      tensors.set(`${key}.lora_magnitude_vector`, rand([3 * d], 10 * i + 3, 1));
    }
    fs.mkdirSync(dir, { recursive: true });
    writeSafetensors(path.join(dir, ADAPTER_WEIGHTS_FILE), tensors, { format: 'pt' });
    fs.writeFileSync(path.join(dir, ADAPTER_CONFIG_FILE), JSON.stringify({ peft_type: 'LORA', task_type: 'CAUSAL_LM', r, lora_alpha: 4, target_modules: ['c_attn'], fan_in_fan_out: true, use_dora: true }));
    const back = loadAdapter(m, dir) as LoraAdapter;
    assert.equal(back.config.useDora, true);
    assert.equal(back.loraTargets.length, 3 * gpt2.nLayers);
    const st = readSafetensors(path.join(dir, ADAPTER_WEIGHTS_FILE)).tensors;
    const diff = maxAbsDiff(tunelabLogits(m), gpt2Logits(gpt2, hf, row, peftDora(st, hf, 2)));
    assert.ok(diff < 1e-4, `tunelab's logits differ from PEFT's DoRA forward by ${diff}`);
    m.dispose();
  });

  it('GPT-2 IA3 on k/v loads into GPT2LMHeadModel\'s c_attn with the same logits', async () => {
    const m = CausalLM.create(gpt2, { seed: 3 });
    addIa3(m, { targetModules: ['k_proj', 'v_proj', 'down_proj'], feedforwardModules: ['down_proj'] });
    perturb(m);
    const want = tunelabLogits(m);
    const dir = path.join(tmp, 'gpt2-ia3-logits');
    await saveAdapter(m, dir);
    await saveModel(path.join(dir, 'base'), m);
    const config = readJson(path.join(dir, ADAPTER_CONFIG_FILE));
    assert.deepEqual(peftConfigFromJson(config).warnings, []);
    const st = readSafetensors(path.join(dir, ADAPTER_WEIGHTS_FILE)).tensors;
    const modules = gpt2Modules(gpt2).filter((x) => (config.target_modules as string[]).some((t) => x.name.endsWith(`.${t}`)));
    assert.deepEqual(modules.map((x) => x.name.replace(/^transformer\./, '')), ['h.0.attn.c_attn', 'h.0.mlp.c_proj', 'h.1.attn.c_attn', 'h.1.mlp.c_proj']);
    assert.deepEqual([...st.keys()].sort(), modules.map((x) => `base_model.model.${x.name}.ia3_l`).sort());
    // PEFT's IA3 Conv1D: output · ia3_l (out, 1) flattened, or input · ia3_l (1, in) for feedforward modules.
    const vec = (module: string) => tf.tensor1d(st.get(`base_model.model.${module}.ia3_l`)!.read().data as Float32Array);
    const hf = hfStateDict(path.join(dir, 'base'));
    const got = gpt2Logits(gpt2, hf, row, (module, x, y) => {
      if (!modules.some((q) => q.name === module)) return y;
      if (!(config.feedforward_modules as string[]).some((t) => module.endsWith(`.${t}`))) return tf.mul(y, vec(module)) as tf.Tensor2D;
      const w = hf.get(`${module}.weight`)!;
      return tf.add(tf.matMul(tf.mul(x, vec(module)), tf.tensor2d(w.data, w.shape as [number, number])), tf.tensor1d(hf.get(`${module}.bias`)!.data)) as tf.Tensor2D;
    });
    assert.ok(maxAbsDiff(got, want) < 1e-4);
    assert.ok(maxAbsDiff(gpt2Logits(gpt2, hf, row), want) > 1e-3);
    m.dispose();
  });

  it('reads old tunelab folders: the `tunelab` key inside adapter_config.json, GPT-2 q/k/v under tunelab names', async () => {
    const m = CausalLM.create(gpt2, { seed: 4 });
    const lora = addLora(m, { r: 2, targetModules: ['q_proj', 'v_proj'], seed: 9 });
    perturb(m);
    const want = tunelabLogits(m);
    const dir = path.join(tmp, 'old-gpt2');
    fs.mkdirSync(dir);
    // The layout tunelab wrote before: transformer.h.i.attn.q_proj.lora_A.weight [r, in], metadata inline.
    const tensors = new Map<string, { shape: number[]; data: Float32Array }>();
    for (const p of lora.loraTargets) {
      const [, i, x] = /^layers\.(\d+)\.attn\.([qkv]_proj)$/.exec(p)!;
      for (const w of ['lora_A', 'lora_B'] as const) {
        const t = tf.tidy(() => tf.transpose(lora.weights.get(`${p}.${w}`)!));
        tensors.set(`base_model.model.transformer.h.${i}.attn.${x}.${w}.weight`, { shape: [...t.shape], data: t.dataSync() as Float32Array });
        t.dispose();
      }
    }
    writeSafetensors(path.join(dir, ADAPTER_WEIGHTS_FILE), tensors);
    fs.writeFileSync(path.join(dir, ADAPTER_CONFIG_FILE), JSON.stringify({
      peft_type: 'LORA', r: 2, lora_alpha: 8, target_modules: ['q_proj', 'v_proj'], fan_in_fan_out: true, rank_pattern: {}, alpha_pattern: {},
      tunelab: { family: 'gpt2', seed: 9, targets: [...lora.loraTargets], biasTargets: [] },
    }));
    const fresh = CausalLM.create(gpt2, { seed: 4 });
    const back = loadAdapter(fresh, dir) as LoraAdapter;
    assert.equal(back.config.seed, 9);
    assert.deepEqual([...back.loraTargets], [...lora.loraTargets]);
    assert.ok(maxAbsDiff(tunelabLogits(fresh), want) < 1e-5);
    fresh.dispose();
    m.dispose();
  });

  it('refuses a block c_attn LoRA whose off-diagonal blocks were trained elsewhere, naming the tensor', async () => {
    const m = CausalLM.create(gpt2, { seed: 5 });
    addLora(m, { r: 2, targetModules: ['q_proj', 'v_proj'] });
    perturb(m);
    const dir = path.join(tmp, 'offdiag');
    await saveAdapter(m, dir);
    const key = 'base_model.model.transformer.h.0.attn.c_attn.lora_B.weight';
    const all = new Map([...readSafetensors(path.join(dir, ADAPTER_WEIGHTS_FILE)).tensors].map(([k, e]) => { const t = e.read(); return [k, { shape: t.shape, data: (t.data as Float32Array).slice() }]; }));
    all.get(key)!.data[2 * 4 + 0] = 0.5; // row 2 (q), column 0 is in q's block: fine; row 16 (k rows start at 16) is off-block
    all.get(key)!.data[16 * 4 + 0] = 0.5;
    writeSafetensors(path.join(dir, ADAPTER_WEIGHTS_FILE), all);
    const fresh = CausalLM.create(gpt2, { seed: 5 });
    assert.throws(() => loadAdapter(fresh, dir), (e: Error) => e.message.includes(key) && /not the block-diagonal form .*element \[16, 0\]/.test(e.message));
    assert.deepEqual(peft(fresh).names, []);
    fresh.dispose();
    m.dispose();
  });
});
