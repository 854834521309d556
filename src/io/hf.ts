/**
 * Hugging Face names and layouts of tunelab parameters, so a saved folder is what `transformers` reads:
 * Llama (`LlamaForCausalLM`, nn.Linear weights [out, in]) and GPT-2 (`GPT2LMHeadModel`, Conv1D [in, out],
 * fused c_attn). tunelab keeps linear weights [in, out]; conversion happens only here.
 */
import { ModelConfig, modelConfig } from '../model/config';

/** A tensor in plain memory: row-major values and shape. */
export interface HostTensor {
  shape: number[];
  data: Float32Array;
}

/** Transposes a row-major (rows, cols) matrix. */
export function transpose2d(t: HostTensor): HostTensor {
  const [rows, cols] = t.shape;
  const out = new Float32Array(rows * cols);
  for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) out[c * rows + r] = t.data[r * cols + c];
  return { shape: [cols, rows], data: out };
}

/** Concatenates matrices (rows, c_i) along columns, or vectors end to end. */
function concatColumns(parts: HostTensor[]): HostTensor {
  if (parts[0].shape.length === 1) {
    const data = new Float32Array(parts.reduce((n, p) => n + p.data.length, 0));
    let o = 0;
    for (const p of parts) { data.set(p.data, o); o += p.data.length; }
    return { shape: [data.length], data };
  }
  const rows = parts[0].shape[0];
  const cols = parts.reduce((n, p) => n + p.shape[1], 0);
  const data = new Float32Array(rows * cols);
  for (let r = 0; r < rows; r++) {
    let o = r * cols;
    for (const p of parts) { data.set(p.data.subarray(r * p.shape[1], (r + 1) * p.shape[1]), o); o += p.shape[1]; }
  }
  return { shape: [rows, cols], data };
}

/** Splits columns [start, start + width) out of a matrix (or a slice of a vector). */
function columns(t: HostTensor, start: number, width: number): HostTensor {
  if (t.shape.length === 1) return { shape: [width], data: t.data.slice(start, start + width) };
  const [rows, cols] = t.shape;
  const data = new Float32Array(rows * width);
  for (let r = 0; r < rows; r++) data.set(t.data.subarray(r * cols + start, r * cols + start + width), r * width);
  return { shape: [rows, width], data };
}

const llamaLayer: [RegExp, string, boolean][] = [
  // [tunelab path, HF name, transpose]
  [/^layers\.(\d+)\.attn_norm\.weight$/, 'model.layers.$1.input_layernorm.weight', false],
  [/^layers\.(\d+)\.mlp_norm\.weight$/, 'model.layers.$1.post_attention_layernorm.weight', false],
  [/^layers\.(\d+)\.attn\.(q|k|v|o)_proj\.weight$/, 'model.layers.$1.self_attn.$2_proj.weight', true],
  [/^layers\.(\d+)\.mlp\.(gate|up|down)_proj\.weight$/, 'model.layers.$1.mlp.$2_proj.weight', true],
  [/^embed_tokens\.weight$/, 'model.embed_tokens.weight', false],
  [/^norm\.weight$/, 'model.norm.weight', false],
  [/^lm_head\.weight$/, 'lm_head.weight', true],
];

const gpt2Names: [RegExp, string][] = [
  [/^embed_tokens\.weight$/, 'wte.weight'],
  [/^embed_positions\.weight$/, 'wpe.weight'],
  [/^layers\.(\d+)\.attn_norm\.(weight|bias)$/, 'h.$1.ln_1.$2'],
  [/^layers\.(\d+)\.mlp_norm\.(weight|bias)$/, 'h.$1.ln_2.$2'],
  [/^layers\.(\d+)\.attn\.o_proj\.(weight|bias)$/, 'h.$1.attn.c_proj.$2'],
  [/^layers\.(\d+)\.mlp\.up_proj\.(weight|bias)$/, 'h.$1.mlp.c_fc.$2'],
  [/^layers\.(\d+)\.mlp\.down_proj\.(weight|bias)$/, 'h.$1.mlp.c_proj.$2'],
  [/^norm\.(weight|bias)$/, 'ln_f.$1'],
];

/** HF buffers that carry no parameters and are skipped on load. */
const ignoredHfTensors = /(^|\.)attn\.(bias|masked_bias)$|rotary_emb\.inv_freq$/;

/**
 * Converts tunelab parameters to HF tensors (names and layouts). GPT-2's q/k/v are fused into c_attn.
 *
 * @example
 * const hf = toHfTensors(model.config, params); // Map { 'model.layers.0.self_attn.q_proj.weight' => ... }
 */
export function toHfTensors(config: ModelConfig, params: Map<string, HostTensor>): Map<string, HostTensor> {
  const out = new Map<string, HostTensor>();
  if (config.family === 'llama') {
    for (const [path, t] of params) {
      const rule = llamaLayer.find(([re]) => re.test(path));
      if (!rule) throw new Error(`no Hugging Face name for parameter "${path}"`);
      out.set(path.replace(rule[0], rule[1]), rule[2] ? transpose2d(t) : t);
    }
    return out;
  }
  for (const [path, t] of params) {
    const qkv = /^layers\.(\d+)\.attn\.q_proj\.(weight|bias)$/.exec(path);
    if (qkv) {
      const [, i, kind] = qkv;
      const parts = ['q', 'k', 'v'].map((x) => params.get(`layers.${i}.attn.${x}_proj.${kind}`)!);
      out.set(`h.${i}.attn.c_attn.${kind}`, concatColumns(parts));
      continue;
    }
    if (/^layers\.\d+\.attn\.[kv]_proj\./.test(path)) continue;
    const rule = gpt2Names.find(([re]) => re.test(path));
    if (!rule) throw new Error(`no Hugging Face name for parameter "${path}"`);
    out.set(path.replace(rule[0], rule[1]), t);
  }
  return out;
}

/**
 * Reads tunelab parameters from HF tensors: `expected` lists each tunelab path with its shape; `get`
 * returns an HF tensor (or undefined). Errors name the source, the tensor and the shapes.
 */
export function fromHfTensors(
  config: ModelConfig,
  expected: Map<string, number[]>,
  hfNames: string[],
  get: (hfName: string) => HostTensor | undefined,
  source: string,
): Map<string, HostTensor> {
  const prefix = config.family === 'gpt2' && hfNames.some((n) => n.startsWith('transformer.')) ? 'transformer.' : '';
  const used = new Set<string>();
  const need = (name: string): HostTensor => {
    const t = get(prefix + name) ?? get(name);
    if (!t) throw new Error(`${source}: missing tensor "${prefix + name}"`);
    used.add(hfNames.includes(prefix + name) ? prefix + name : name);
    return t;
  };
  // Shapes are compared in HF's layout, so the message names the shapes the file really has.
  const check = (path: string, hfName: string, t: HostTensor, transposed = false): HostTensor => {
    const want = transposed ? [...expected.get(path)!].reverse() : expected.get(path)!;
    if (t.shape.join() !== want.join()) {
      throw new Error(`${source}: tensor "${prefix + hfName}" has shape [${t.shape}] but the config needs [${want}] for ${path}`);
    }
    return transposed ? transpose2d(t) : t;
  };
  const out = new Map<string, HostTensor>();
  const hd = config.dModel / config.nHeads;
  for (const path of expected.keys()) {
    if (config.family === 'llama') {
      const rule = llamaLayer.find(([re]) => re.test(path));
      if (!rule) throw new Error(`no Hugging Face name for parameter "${path}"`);
      const name = path.replace(rule[0], rule[1]);
      out.set(path, check(path, name, need(name), rule[2]));
      continue;
    }
    const qkv = /^layers\.(\d+)\.attn\.(q|k|v)_proj\.(weight|bias)$/.exec(path);
    if (qkv) {
      const [, i, which, kind] = qkv;
      const name = `h.${i}.attn.c_attn.${kind}`;
      const fused = need(name);
      const width = config.nHeads * hd;
      const wantFused = kind === 'weight' ? [config.dModel, 3 * width] : [3 * width];
      if (fused.shape.join() !== wantFused.join()) throw new Error(`${source}: tensor "${prefix + name}" has shape [${fused.shape}] but the config needs [${wantFused}]`);
      out.set(path, check(path, name, columns(fused, 'qkv'.indexOf(which) * width, width)));
      continue;
    }
    const rule = gpt2Names.find(([re]) => re.test(path));
    if (!rule) throw new Error(`no Hugging Face name for parameter "${path}"`);
    const name = path.replace(rule[0], rule[1]);
    out.set(path, check(path, name, need(name)));
  }
  const tiedHead = (n: string) => config.tieEmbeddings && /^lm_head\.weight$/.test(n);
  const unknown = hfNames.filter((n) => !used.has(n) && !ignoredHfTensors.test(n) && !tiedHead(n));
  if (unknown.length) throw new Error(`${source}: unexpected tensors for a ${config.family} model: ${unknown.slice(0, 5).join(', ')}${unknown.length > 5 ? `, … (${unknown.length})` : ''}`);
  return out;
}

/** A Hugging Face `config.json` object for the model. */
export function toHfConfig(c: ModelConfig, special: { bos?: number; eos?: number; pad?: number } = {}): Record<string, unknown> {
  if (c.family === 'llama') {
    return {
      architectures: ['LlamaForCausalLM'], model_type: 'llama', vocab_size: c.vocabSize, hidden_size: c.dModel,
      intermediate_size: c.dFf, num_hidden_layers: c.nLayers, num_attention_heads: c.nHeads,
      num_key_value_heads: c.nKvHeads, head_dim: c.dModel / c.nHeads, max_position_embeddings: c.contextLength,
      rms_norm_eps: c.normEps, rope_theta: c.ropeTheta, tie_word_embeddings: c.tieEmbeddings, hidden_act: 'silu',
      attention_bias: false, mlp_bias: false, attention_dropout: c.dropout, initializer_range: c.initStd,
      bos_token_id: special.bos ?? null, eos_token_id: special.eos ?? null, pad_token_id: special.pad ?? null, torch_dtype: 'float32',
    };
  }
  return {
    architectures: ['GPT2LMHeadModel'], model_type: 'gpt2', vocab_size: c.vocabSize, n_positions: c.contextLength,
    n_ctx: c.contextLength, n_embd: c.dModel, n_layer: c.nLayers, n_head: c.nHeads, n_inner: c.dFf,
    activation_function: 'gelu_new', layer_norm_epsilon: c.normEps, resid_pdrop: c.dropout, embd_pdrop: c.dropout,
    attn_pdrop: c.dropout, initializer_range: c.initStd, tie_word_embeddings: true,
    bos_token_id: special.bos ?? null, eos_token_id: special.eos ?? null, pad_token_id: special.pad ?? null, torch_dtype: 'float32',
  };
}

/** RoPE types of transformers' `ROPE_INIT_FUNCTIONS` (modeling_rope_utils.py); tunelab implements "default". */
const ropeTypes = ['default', 'linear', 'dynamic', 'yarn', 'longrope', 'llama3'];

/**
 * RoPE θ of a Llama-family config, from transformers v5's `rope_parameters` ({rope_type, rope_theta, …})
 * or v4's top-level `rope_theta` (+ `rope_scaling`); 10000 when neither says (transformers' Llama default).
 * Any `rope_type` but "default" changes the frequencies, so it is refused by name.
 */
function readRopeTheta(hf: Record<string, unknown>, source: string): number {
  const top = hf.rope_theta;
  const params = hf.rope_parameters ?? hf.rope_scaling;
  const key = hf.rope_parameters !== undefined && hf.rope_parameters !== null ? 'rope_parameters' : 'rope_scaling';
  let theta = top;
  if (params !== undefined && params !== null) {
    if (typeof params !== 'object' || Array.isArray(params)) throw new Error(`${source}: ${key} must be an object (got ${JSON.stringify(params)})`);
    const p = params as Record<string, unknown>;
    // v5 keys hybrid models' RoPE by layer type ({full_attention: {...}, sliding_attention: {...}}).
    if (!('rope_type' in p) && !('type' in p) && !('rope_theta' in p) && Object.values(p).some((v) => typeof v === 'object' && v !== null)) {
      throw new Error(`${source}: ${key} per layer type (${Object.keys(p).join(', ')}) is not supported (one RoPE for every layer)`);
    }
    const type = p.rope_type ?? p.type ?? 'default';
    if (type !== 'default') {
      const known = ropeTypes.includes(type as string) ? '' : ` (transformers knows ${ropeTypes.join(', ')})`;
      throw new Error(`${source}: ${key}.rope_type ${JSON.stringify(type)} is not supported: tunelab implements plain RoPE ("default") only, not ${ropeTypes.slice(1).join(', ')} scaling${known}`);
    }
    const partial = p.partial_rotary_factor;
    if (partial !== undefined && partial !== null && partial !== 1) throw new Error(`${source}: ${key}.partial_rotary_factor ${JSON.stringify(partial)} is not supported (RoPE on the full head only)`);
    if (p.rope_theta !== undefined && p.rope_theta !== null) {
      if (top !== undefined && top !== null && top !== p.rope_theta) throw new Error(`${source}: rope_theta ${JSON.stringify(top)} and ${key}.rope_theta ${JSON.stringify(p.rope_theta)} disagree`);
      theta = p.rope_theta;
    }
  }
  theta ??= 10000;
  if (typeof theta !== 'number' || !(theta > 0) || !Number.isFinite(theta)) throw new Error(`${source}: ${theta === top ? 'rope_theta' : `${key}.rope_theta`} must be a positive number (got ${JSON.stringify(theta)})`);
  return theta;
}

/** tunelab's config names → the Hugging Face keys they come from, for errors of {@link modelConfig}. */
const hfKeys: Record<string, Partial<Record<keyof ModelConfig, string>>> = {
  llama: { vocabSize: 'vocab_size', dModel: 'hidden_size', dFf: 'intermediate_size', nLayers: 'num_hidden_layers', nHeads: 'num_attention_heads', nKvHeads: 'num_key_value_heads', contextLength: 'max_position_embeddings', normEps: 'rms_norm_eps', dropout: 'attention_dropout', initStd: 'initializer_range', ropeTheta: 'rope_theta' },
  gpt2: { vocabSize: 'vocab_size', dModel: 'n_embd', dFf: 'n_inner', nLayers: 'n_layer', nHeads: 'n_head', contextLength: 'n_positions', normEps: 'layer_norm_epsilon', dropout: 'resid_pdrop', initStd: 'initializer_range' },
};

/**
 * Reads a Hugging Face `config.json` object of a Llama or GPT-2 model; errors name the source and the
 * Hugging Face key. Sizes are checked to be positive integers before anything is derived from them.
 */
export function fromHfConfig(hf: Record<string, unknown>, source: string): ModelConfig {
  const num = (key: string, fallback?: number): number => {
    const v = hf[key] ?? fallback;
    if (typeof v !== 'number' || !Number.isFinite(v)) throw new Error(`${source}: "${key}" must be a number (got ${JSON.stringify(v)})`);
    return v;
  };
  const size = (key: string, fallback?: number): number => {
    const v = hf[key] ?? fallback;
    if (typeof v !== 'number' || !Number.isInteger(v) || v <= 0) throw new Error(`${source}: "${key}" must be a positive integer (got ${JSON.stringify(v)})`);
    return v;
  };
  const build = (partial: Partial<ModelConfig>): ModelConfig => {
    try {
      return modelConfig(partial);
    } catch (e) {
      // modelConfig speaks tunelab's names (config.dModel); the reader of this file knows the HF keys.
      const keys = hfKeys[partial.family!];
      throw new Error(`${source}: ${(e as Error).message.replace(/config\.(\w+)/g, (m, k: keyof ModelConfig) => (keys[k] ? `"${keys[k]}" (${m})` : m))}`, { cause: e });
    }
  };
  const type = hf.model_type;
  // Options that change the computation and that tunelab does not implement: loading would give wrong outputs.
  const unsupported = (key: string, ok: (v: unknown) => boolean, why: string) => {
    if (hf[key] !== undefined && !ok(hf[key])) throw new Error(`${source}: ${key} ${JSON.stringify(hf[key])} is not supported (${why})`);
  };
  if (type === 'llama' || type === 'mistral') {
    const heads = size('num_attention_heads');
    const d = size('hidden_size');
    const sizes = { vocabSize: size('vocab_size'), dFf: size('intermediate_size'), nLayers: size('num_hidden_layers'), nKvHeads: size('num_key_value_heads', heads), contextLength: size('max_position_embeddings') };
    unsupported('hidden_act', (v) => v === 'silu', 'silu only');
    unsupported('attention_bias', (v) => v === false, 'no attention biases');
    unsupported('mlp_bias', (v) => v === false, 'no MLP biases');
    unsupported('pretraining_tp', (v) => v === 1, 'tensor-parallel slicing of 1 only');
    unsupported('partial_rotary_factor', (v) => v === 1, 'RoPE on the full head only');
    const ropeTheta = readRopeTheta(hf, source);
    if (type === 'mistral' && typeof hf.sliding_window === 'number' && hf.sliding_window < sizes.contextLength) {
      throw new Error(`${source}: sliding_window ${hf.sliding_window} is not supported (full causal attention only; it must be null or ≥ max_position_embeddings)`);
    }
    if (hf.head_dim !== undefined && hf.head_dim !== null && size('head_dim') * heads !== d) {
      throw new Error(`${source}: "head_dim" × "num_attention_heads" must equal "hidden_size" (${hf.head_dim} × ${heads} ≠ ${d})`);
    }
    return build({
      family: 'llama', dModel: d, nHeads: heads, ...sizes, normEps: num('rms_norm_eps', 1e-6), ropeTheta,
      tieEmbeddings: hf.tie_word_embeddings === true, dropout: num('attention_dropout', 0), initStd: num('initializer_range', 0.02),
    });
  }
  if (type === 'gpt2') {
    const d = size('n_embd');
    const sizes = { vocabSize: size('vocab_size'), nLayers: size('n_layer'), nHeads: size('n_head'), contextLength: size('n_positions'), dFf: hf.n_inner === null || hf.n_inner === undefined ? 4 * d : size('n_inner') };
    unsupported('activation_function', (v) => v === 'gelu_new' || v === 'gelu_pytorch_tanh', 'the tanh GELU only');
    unsupported('scale_attn_by_inverse_layer_idx', (v) => v === false, 'standard attention scaling only');
    unsupported('reorder_and_upcast_attn', (v) => v === false, 'standard attention only');
    unsupported('scale_attn_weights', (v) => v === true, 'scaled attention only');
    return build({
      family: 'gpt2', dModel: d, ...sizes, normEps: num('layer_norm_epsilon', 1e-5), tieEmbeddings: true,
      dropout: num('resid_pdrop', 0), initStd: num('initializer_range', 0.02),
    });
  }
  throw new Error(`${source}: model_type ${JSON.stringify(type)} is not supported (llama, mistral or gpt2)`);
}
