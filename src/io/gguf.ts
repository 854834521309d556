/**
 * GGUF export, so a tunelab model runs in llama.cpp (and everything built on it: node-llama-cpp, Ollama,
 * LM Studio). Follows llama.cpp's `gguf-py` and `convert_hf_to_gguf.py`:
 *
 * - File layout (GGUF v3, little-endian): magic "GGUF", u32 version 3, u64 tensor count, u64 metadata
 *   count; metadata as (string key, u32 type, value); tensor infos as (string name, u32 n_dims, u64 dims
 *   innermost first, u32 ggml type, u64 offset from the data start); zero padding to `general.alignment`
 *   (32); tensor data, each tensor starting on a multiple of the alignment. Strings are u64 length + UTF-8.
 * - Llama family → `general.architecture = "llama"`. Weights go out in HF's [out, in] row-major layout
 *   (ggml dims [in, out]); q/k rows are permuted from HF's rotate-half RoPE to llama.cpp's interleaved
 *   (GPT-J style) pairs exactly as the converter's `LlamaModel.permute` does (k with the kv-head count).
 *   A tied head writes no `output` tensor: llama.cpp then reuses `token_embd` (as for tied HF models).
 * - GPT-2 family → not exported (throws). llama.cpp has a `gpt2` architecture, but its GELU runs through
 *   an f16 lookup table on CPU and it is not covered by our llama.cpp parity tests, so we refuse rather
 *   than ship a file whose outputs we have not checked.
 * - Tokenizer → `tokenizer.ggml.model = "gpt2"` (byte-level BPE): tokens in their byte-level spelling as
 *   in tokenizer.json, merges as "left right", token types (special added tokens → control), bos/eos/pad
 *   ids, `add_bos_token = false` (tunelab never adds BOS), and `tokenizer.ggml.pre = "gpt-2"`, which makes
 *   llama.cpp split text with GPT-2's regex — the one our ByteLevel pre-tokenizer uses (`use_regex`,
 *   no prefix space). A ChatML `tokenizer.chat_template` is added when the tokenizer has <|im_start|>/<|im_end|>.
 * - Types: f32; f16 (2-D weights, norms stay f32 as in the converter); q8_0 / q4_0 (llama.cpp's block
 *   formats, see `./gguf-quant`). As in `convert_hf_to_gguf.py`, 1-D tensors stay f32 and a matrix whose
 *   rows are not a multiple of 32 falls back to f16. With q4_0, `token_embd` (and `output`) are written
 *   as q8_0: llama.cpp's llama-quantize also keeps the head — or, when tied, the embedding — at higher
 *   precision (Q6_K, a k-quant we do not write).
 * - A LoRA adapter can be written on its own as a llama.cpp adapter GGUF ({@link exportLoraGguf}).
 */
import * as fs from 'node:fs';
import { writeFileAtomic } from './atomic';
import { transpose2d, type HostTensor } from './hf';
import { QK, Q4_0_BLOCK_BYTES, Q8_0_BLOCK_BYTES, dequantizeQ4_0, dequantizeQ8_0, fromF16Bytes, quantizeQ4_0, quantizeQ8_0, toF16Bytes } from './gguf-quant';
import { peft } from '../peft/peft';
import { LoraAdapter } from '../peft/lora';
import { hostParams } from './checkpoint';
import { chatmlJinja } from '../data/chat';
import { mergePair } from '../tokenizer/json';
import type { CausalLM } from '../model/transformer';
import type { ModelConfig } from '../model/config';
import type { Tokenizer } from '../tokenizer/tokenizer';

/** GGUF metadata value types (gguf-py `GGUFValueType`). */
export const GgufValueType = {
  UINT8: 0, INT8: 1, UINT16: 2, INT16: 3, UINT32: 4, INT32: 5, FLOAT32: 6, BOOL: 7, STRING: 8, ARRAY: 9,
  UINT64: 10, INT64: 11, FLOAT64: 12,
} as const;

/** The ggml tensor types this module writes and reads (gguf-py `GGMLQuantizationType`). */
export const GgmlType = { F32: 0, F16: 1, Q4_0: 2, Q8_0: 8 } as const;

/** Tensor types {@link exportGguf} writes. */
export type GgufWeightType = 'f32' | 'f16' | 'q8_0' | 'q4_0';

/** Token types of `tokenizer.ggml.token_type` (gguf-py `TokenType`). */
export const GgufTokenType = { NORMAL: 1, UNKNOWN: 2, CONTROL: 3, USER_DEFINED: 4, UNUSED: 5, BYTE: 6 } as const;

/** `general.file_type` values (gguf-py `LlamaFileType`). */
const FILE_TYPE = { f32: 0, f16: 1, q4_0: 2, q8_0: 7 } as const;

const GGUF_MAGIC = 0x46554747; // "GGUF" read as a little-endian u32
const GGUF_VERSION = 3;
const ALIGNMENT = 32;

/** A metadata value as read back: numbers (u64/i64 as bigint), booleans, strings, or arrays of them. */
export type GgufValue = number | bigint | boolean | string | GgufValue[];

/** One tensor of a parsed file. `dims` are ggml's (innermost first), i.e. reversed from row-major shape. */
export interface GgufTensorInfo {
  name: string;
  dims: number[];
  type: number;
  /** Offset from the start of the data section. */
  offset: number;
  byteLength: number;
}

/** A parsed GGUF file. */
export interface GgufFile {
  version: number;
  metadata: Map<string, GgufValue>;
  /** The type of each metadata key (for arrays: `[ARRAY, element type]`). */
  metadataTypes: Map<string, number[]>;
  tensors: GgufTensorInfo[];
  alignment: number;
  /** Byte offset of the data section in the file. */
  dataStart: number;
  /** Decodes a tensor (F32, F16, Q8_0 or Q4_0) to row-major float32 values with shape = reversed dims. */
  read(name: string): HostTensor;
}

/** Options of {@link exportGguf}. */
export interface GgufExportOptions {
  /**
   * Weight type: 'f32' (default) keeps every tensor float32; 'f16' stores 2-D weights as float16; 'q8_0' /
   * 'q4_0' store them in llama.cpp's 32-value blocks (see the top of this file). Norms always stay float32.
   */
  type?: GgufWeightType;
  /** @deprecated Alias of `type` ('f32' | 'f16'), kept for older callers. */
  dtype?: 'f32' | 'f16';
  /** `general.name` (default "tunelab"). */
  name?: string;
  /** Replace an existing file (default false: an existing file is an error). */
  overwrite?: boolean;
  /**
   * `tokenizer.chat_template`: a Jinja string, or null for none. Default: ChatML when the tokenizer has
   * <|im_start|>/<|im_end|> roles, else none.
   */
  chatTemplate?: string | null;
}

/** What {@link exportGguf} wrote. */
export interface GgufExportResult {
  file: string;
  bytes: number;
  tensors: number;
  type: GgufWeightType;
  /** @deprecated Same as `type`. */
  dtype: GgufWeightType;
}

// ---------------------------------------------------------------------------------------------------
// Writing

type Meta = { key: string; type: number; value: unknown; elemType?: number };

/** Little-endian byte sink that grows as needed. */
class ByteWriter {
  private buf = new Uint8Array(1 << 16);
  private view = new DataView(this.buf.buffer);
  length = 0;
  private ensure(n: number): void {
    if (this.length + n <= this.buf.length) return;
    let size = this.buf.length * 2;
    while (size < this.length + n) size *= 2;
    const next = new Uint8Array(size);
    next.set(this.buf.subarray(0, this.length));
    this.buf = next;
    this.view = new DataView(next.buffer);
  }
  u8(v: number) { this.ensure(1); this.view.setUint8(this.length, v); this.length += 1; }
  i8(v: number) { this.ensure(1); this.view.setInt8(this.length, v); this.length += 1; }
  u16(v: number) { this.ensure(2); this.view.setUint16(this.length, v, true); this.length += 2; }
  i16(v: number) { this.ensure(2); this.view.setInt16(this.length, v, true); this.length += 2; }
  u32(v: number) { this.ensure(4); this.view.setUint32(this.length, v, true); this.length += 4; }
  i32(v: number) { this.ensure(4); this.view.setInt32(this.length, v, true); this.length += 4; }
  f32(v: number) { this.ensure(4); this.view.setFloat32(this.length, v, true); this.length += 4; }
  f64(v: number) { this.ensure(8); this.view.setFloat64(this.length, v, true); this.length += 8; }
  u64(v: number | bigint) { this.ensure(8); this.view.setBigUint64(this.length, BigInt(v), true); this.length += 8; }
  i64(v: number | bigint) { this.ensure(8); this.view.setBigInt64(this.length, BigInt(v), true); this.length += 8; }
  bytes(b: Uint8Array) { this.ensure(b.length); this.buf.set(b, this.length); this.length += b.length; }
  str(s: string) { const b = new TextEncoder().encode(s); this.u64(b.length); this.bytes(b); }
  pad(alignment: number) { const n = (alignment - (this.length % alignment)) % alignment; this.ensure(n); this.length += n; }
  result(): Uint8Array { return this.buf.subarray(0, this.length); }
}

function writeScalar(w: ByteWriter, type: number, v: unknown): void {
  switch (type) {
    case GgufValueType.UINT8: return w.u8(v as number);
    case GgufValueType.INT8: return w.i8(v as number);
    case GgufValueType.UINT16: return w.u16(v as number);
    case GgufValueType.INT16: return w.i16(v as number);
    case GgufValueType.UINT32: return w.u32(v as number);
    case GgufValueType.INT32: return w.i32(v as number);
    case GgufValueType.FLOAT32: return w.f32(v as number);
    case GgufValueType.BOOL: return w.u8(v ? 1 : 0);
    case GgufValueType.STRING: return w.str(v as string);
    case GgufValueType.UINT64: return w.u64(v as number | bigint);
    case GgufValueType.INT64: return w.i64(v as number | bigint);
    case GgufValueType.FLOAT64: return w.f64(v as number);
    default: throw new Error(`gguf: cannot write value type ${type}`);
  }
}

/** A tensor ready to write: row-major float32 values, its row-major shape and the ggml type to store. */
interface OutTensor {
  name: string;
  shape: number[];
  data: Float32Array;
  type: number;
}

/**
 * The converter's `LlamaModel.permute` on an HF [out, in] matrix: within each head, row j·hd/2 + i
 * (rotate-half pair (i, i + hd/2)) moves to row 2i + j, so RoPE pairs become adjacent as llama.cpp's
 * "normal" RoPE expects.
 */
function permuteRope(t: HostTensor, nHeads: number): HostTensor {
  const [rows, cols] = t.shape;
  const hd = rows / nHeads;
  const half = hd / 2;
  const out = new Float32Array(rows * cols);
  for (let h = 0; h < nHeads; h++) {
    for (let i = 0; i < half; i++) {
      for (let j = 0; j < 2; j++) {
        const src = h * hd + j * half + i;
        const dst = h * hd + 2 * i + j;
        out.set(t.data.subarray(src * cols, (src + 1) * cols), dst * cols);
      }
    }
  }
  return { shape: [rows, cols], data: out };
}

/** tunelab linear layer (within `layers.N.`) → llama.cpp tensor (within `blk.N.`), in the converter's order. */
const LLAMA_LINEAR: [string, string][] = [
  ['attn.q_proj', 'attn_q'], ['attn.k_proj', 'attn_k'], ['attn.v_proj', 'attn_v'], ['attn.o_proj', 'attn_output'],
  ['mlp.gate_proj', 'ffn_gate'], ['mlp.up_proj', 'ffn_up'], ['mlp.down_proj', 'ffn_down'],
];

/** The llama.cpp name of a tunelab linear path (`layers.3.attn.q_proj` → `blk.3.attn_q`), or undefined. */
function llamaLinearName(path: string): string | undefined {
  const m = /^layers\.(\d+)\.(.+)$/.exec(path);
  if (m) {
    const hit = LLAMA_LINEAR.find(([ours]) => ours === m[2]);
    return hit && `blk.${m[1]}.${hit[1]}`;
  }
  return path === 'lm_head' ? 'output' : undefined;
}

/** Heads whose rows `permuteRope` regroups for a llama.cpp tensor (q: all heads, k: kv heads), else undefined. */
function ropeHeads(c: ModelConfig, ggufName: string): number | undefined {
  if (ggufName.endsWith('.attn_q')) return c.nHeads;
  if (ggufName.endsWith('.attn_k')) return c.nKvHeads;
  return undefined;
}

/** The ggml type of a matrix: the requested one, q8_0 for the embedding/head under q4_0, f16 where rows do not fit blocks. */
function matrixType(name: string, shape: number[], type: GgufWeightType): number {
  if (type === 'f32') return GgmlType.F32;
  if (type === 'f16') return GgmlType.F16;
  if (shape[shape.length - 1] % QK !== 0) return GgmlType.F16; // the converter's QuantError fallback
  if (type === 'q4_0' && (name === 'token_embd.weight' || name === 'output.weight')) return GgmlType.Q8_0;
  return type === 'q8_0' ? GgmlType.Q8_0 : GgmlType.Q4_0;
}

/** GGUF tensors of a Llama model: names and layouts of llama.cpp's converter. */
function llamaTensors(c: ModelConfig, params: Map<string, HostTensor>, type: GgufWeightType): OutTensor[] {
  const need = (p: string): HostTensor => {
    const t = params.get(p);
    if (!t) throw new Error(`exportGguf: model has no parameter "${p}"`);
    return t;
  };
  const out: OutTensor[] = [];
  const matrix = (name: string, t: HostTensor) => out.push({ name, shape: t.shape, data: t.data, type: matrixType(name, t.shape, type) });
  // tunelab stores linear weights [in, out]; GGUF wants HF's [out, in] rows.
  const linear = (path: string) => {
    const name = llamaLinearName(path)!;
    let t = transpose2d(need(`${path}.weight`));
    const heads = ropeHeads(c, name);
    if (heads !== undefined) t = permuteRope(t, heads);
    matrix(`${name}.weight`, t);
  };
  const norm = (name: string, p: string) => {
    const t = need(p);
    out.push({ name, shape: t.shape, data: t.data, type: GgmlType.F32 });
  };
  matrix('token_embd.weight', need('embed_tokens.weight'));
  for (let i = 0; i < c.nLayers; i++) {
    const p = `layers.${i}`;
    const b = `blk.${i}`;
    norm(`${b}.attn_norm.weight`, `${p}.attn_norm.weight`);
    for (const [ours] of LLAMA_LINEAR.slice(0, 4)) linear(`${p}.${ours}`);
    norm(`${b}.ffn_norm.weight`, `${p}.mlp_norm.weight`);
    for (const [ours] of LLAMA_LINEAR.slice(4)) linear(`${p}.${ours}`);
  }
  norm('output_norm.weight', 'norm.weight');
  // Tied head: no `output` tensor; llama.cpp falls back to token_embd.
  if (!c.tieEmbeddings) linear('lm_head');
  return out;
}

/** Tokenizer metadata: byte-level BPE as llama.cpp's "gpt2" tokenizer model. */
function tokenizerMeta(tok: Tokenizer, vocabSize: number, chatTemplate: string | null | undefined): Meta[] {
  if (tok.vocabSize > vocabSize) throw new Error(`exportGguf: tokenizer has ${tok.vocabSize} tokens but the model only ${vocabSize} embedding rows`);
  const json = tok.toJSON();
  if (json.model.type !== 'BPE') throw new Error(`exportGguf: only BPE tokenizers can be exported (got ${json.model.type})`);
  if (json.pre_tokenizer?.type !== 'ByteLevel' || json.pre_tokenizer.use_regex === false || json.pre_tokenizer.add_prefix_space === true) {
    // llama.cpp's "gpt-2" pre-tokenizer is exactly ByteLevel(use_regex, no prefix space); anything else would tokenize differently.
    throw new Error(`exportGguf: the tokenizer's pre_tokenizer must be ByteLevel with use_regex and no add_prefix_space (got ${JSON.stringify(json.pre_tokenizer)})`);
  }
  if (json.normalizer !== null) throw new Error(`exportGguf: tokenizers with a normalizer are not supported (llama.cpp's gpt2 tokenizer has none)`);
  const added = new Map(json.added_tokens.map((t) => [t.id, t]));
  const tokens: string[] = [];
  const types: number[] = [];
  for (let id = 0; id < vocabSize; id++) {
    const text = id < tok.vocabSize ? tok.idToToken(id) : undefined;
    const a = added.get(id);
    if (text === undefined) {
      // Embedding rows past the tokenizer (or id holes): the converter's "[PAD<id>]" unused tokens.
      tokens.push(`[PAD${id}]`);
      types.push(GgufTokenType.UNUSED);
    } else {
      tokens.push(text);
      types.push(a ? (a.special ? GgufTokenType.CONTROL : GgufTokenType.USER_DEFINED) : GgufTokenType.NORMAL);
    }
  }
  const merges = (json.model.merges as unknown[]).map((m, i) => {
    const pair = mergePair(m);
    if (!pair) throw new Error(`exportGguf: merges[${i}] is malformed`);
    return `${pair[0]} ${pair[1]}`;
  });
  const st = tok.specialTokens;
  const meta: Meta[] = [
    { key: 'tokenizer.ggml.model', type: GgufValueType.STRING, value: 'gpt2' },
    { key: 'tokenizer.ggml.pre', type: GgufValueType.STRING, value: 'gpt-2' },
    { key: 'tokenizer.ggml.tokens', type: GgufValueType.ARRAY, elemType: GgufValueType.STRING, value: tokens },
    { key: 'tokenizer.ggml.token_type', type: GgufValueType.ARRAY, elemType: GgufValueType.INT32, value: types },
    { key: 'tokenizer.ggml.merges', type: GgufValueType.ARRAY, elemType: GgufValueType.STRING, value: merges },
  ];
  const id = (key: string, t: { id: number } | undefined) => { if (t) meta.push({ key, type: GgufValueType.UINT32, value: t.id }); };
  id('tokenizer.ggml.bos_token_id', st.bos);
  id('tokenizer.ggml.eos_token_id', st.eos);
  id('tokenizer.ggml.unknown_token_id', st.unk);
  id('tokenizer.ggml.padding_token_id', st.pad);
  // tunelab's encode adds no BOS/EOS by default; llama.cpp must not either, or prompts would differ.
  meta.push({ key: 'tokenizer.ggml.add_bos_token', type: GgufValueType.BOOL, value: false });
  meta.push({ key: 'tokenizer.ggml.add_eos_token', type: GgufValueType.BOOL, value: false });
  const template = chatTemplate === undefined
    ? (st.imStart && st.imEnd ? chatmlJinja({ imStart: st.imStart.token, imEnd: st.imEnd.token }, false) : null)
    : chatTemplate;
  if (template !== null) meta.push({ key: 'tokenizer.chat_template', type: GgufValueType.STRING, value: template });
  return meta;
}

/**
 * Serializes a model and its tokenizer to GGUF v3 bytes (see {@link exportGguf}; `params` are tunelab
 * parameters by path, as `hostParams` returns them).
 *
 * @example
 * const bytes = ggufBytes(model.config, await hostParams(model), tokenizer, { type: 'f16' });
 */
export function ggufBytes(config: ModelConfig, params: Map<string, HostTensor>, tokenizer: Tokenizer, options: GgufExportOptions = {}): Uint8Array {
  return buildGguf(config, params, tokenizer, options).bytes;
}

/** The weight type of `options` (`type`, or its older alias `dtype`), checked. */
function weightType(options: GgufExportOptions): GgufWeightType {
  if (options.type !== undefined && options.dtype !== undefined && options.type !== options.dtype) {
    throw new Error(`exportGguf: options.type ${JSON.stringify(options.type)} and options.dtype ${JSON.stringify(options.dtype)} disagree (dtype is an old alias of type)`);
  }
  const type = options.type ?? options.dtype ?? 'f32';
  if (!Object.prototype.hasOwnProperty.call(FILE_TYPE, type)) throw new Error(`exportGguf: options.type must be one of ${Object.keys(FILE_TYPE).join(', ')} (got ${JSON.stringify(type)})`);
  return type;
}

/** Bytes of a tensor in its ggml type. */
function tensorPayload(t: OutTensor): Uint8Array {
  switch (t.type) {
    case GgmlType.F16: return toF16Bytes(t.data);
    case GgmlType.Q8_0: return quantizeQ8_0(t.data, t.name);
    case GgmlType.Q4_0: return quantizeQ4_0(t.data, t.name);
    // Float32Array bytes are written as they are in memory: GGUF is little-endian, as is every host tfjs runs on.
    default: return new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength);
  }
}

/** Header, metadata, tensor infos and aligned tensor data of a GGUF v3 file. */
function writeGguf(meta: Meta[], tensors: OutTensor[]): Uint8Array {
  const payloads = tensors.map(tensorPayload);
  const w = new ByteWriter();
  w.u32(GGUF_MAGIC);
  w.u32(GGUF_VERSION);
  w.u64(tensors.length);
  w.u64(meta.length);
  for (const m of meta) {
    w.str(m.key);
    w.u32(m.type);
    if (m.type === GgufValueType.ARRAY) {
      const arr = m.value as unknown[];
      w.u32(m.elemType!);
      w.u64(arr.length);
      for (const v of arr) writeScalar(w, m.elemType!, v);
    } else {
      writeScalar(w, m.type, m.value);
    }
  }
  let offset = 0;
  const offsets: number[] = [];
  tensors.forEach((t, i) => {
    w.str(t.name);
    w.u32(t.shape.length);
    for (const d of [...t.shape].reverse()) w.u64(d); // ggml: innermost dimension first
    w.u32(t.type);
    w.u64(offset);
    offsets.push(offset);
    offset += Math.ceil(payloads[i].length / ALIGNMENT) * ALIGNMENT;
  });
  w.pad(ALIGNMENT);
  const dataStart = w.length;
  payloads.forEach((p, i) => {
    w.pad(ALIGNMENT);
    if (w.length - dataStart !== offsets[i]) throw new Error('gguf: internal offset mismatch');
    w.bytes(p);
  });
  w.pad(ALIGNMENT);
  return w.result();
}

function buildGguf(config: ModelConfig, params: Map<string, HostTensor>, tokenizer: Tokenizer, options: GgufExportOptions): { bytes: Uint8Array; tensors: number } {
  const type = weightType(options);
  if (config.family !== 'llama') {
    throw new Error(`exportGguf: the ${config.family} family cannot be exported to GGUF (llama only; llama.cpp's gpt2 architecture is not verified against tunelab)`);
  }
  const hd = config.dModel / config.nHeads;
  const meta: Meta[] = [
    { key: 'general.architecture', type: GgufValueType.STRING, value: 'llama' },
    { key: 'general.name', type: GgufValueType.STRING, value: options.name ?? 'tunelab' },
    { key: 'general.file_type', type: GgufValueType.UINT32, value: FILE_TYPE[type] },
    { key: 'general.alignment', type: GgufValueType.UINT32, value: ALIGNMENT },
    { key: 'llama.context_length', type: GgufValueType.UINT32, value: config.contextLength },
    { key: 'llama.embedding_length', type: GgufValueType.UINT32, value: config.dModel },
    { key: 'llama.block_count', type: GgufValueType.UINT32, value: config.nLayers },
    { key: 'llama.feed_forward_length', type: GgufValueType.UINT32, value: config.dFf },
    { key: 'llama.attention.head_count', type: GgufValueType.UINT32, value: config.nHeads },
    { key: 'llama.attention.head_count_kv', type: GgufValueType.UINT32, value: config.nKvHeads },
    { key: 'llama.rope.freq_base', type: GgufValueType.FLOAT32, value: config.ropeTheta },
    { key: 'llama.attention.layer_norm_rms_epsilon', type: GgufValueType.FLOAT32, value: config.normEps },
    { key: 'llama.rope.dimension_count', type: GgufValueType.UINT32, value: hd },
    { key: 'llama.vocab_size', type: GgufValueType.UINT32, value: config.vocabSize },
    ...tokenizerMeta(tokenizer, config.vocabSize, options.chatTemplate),
  ];
  const tensors = llamaTensors(config, params, type);
  return { bytes: writeGguf(meta, tensors), tensors: tensors.length };
}

/**
 * Exports a model and its tokenizer as a GGUF v3 file that llama.cpp loads (Llama family; see the top of
 * this file for layouts). Written atomically; an existing `file` is an error unless `overwrite: true`.
 * Adapters must be merged first (e.g. LoRA's `mergeAndUnload`): hooks are not part of the weights.
 *
 * @example
 * const { model, tokenizer } = await base('tiny-llama');
 * await exportGguf(model, tokenizer, 'tiny.gguf', { type: 'q8_0', name: 'tiny-llama' });
 * // llama-cli -m tiny.gguf -p "Call me" -n 32 --temp 0
 */
export async function exportGguf(model: CausalLM, tokenizer: Tokenizer, file: string, options: GgufExportOptions = {}): Promise<GgufExportResult> {
  if (!options.overwrite && fs.existsSync(file)) throw new Error(`${file}: already exists; pass overwrite: true (CLI: --overwrite) to replace it`);
  if (model.hooks.linear.size || model.hooks.embedding || model.hooks.prefix || model.hooks.virtualTokens) {
    throw new Error('exportGguf: the model has adapters installed; merge them into the weights first (e.g. mergeAndUnload) — GGUF holds only base weights');
  }
  const type = weightType(options);
  const { bytes, tensors } = buildGguf(model.config, await hostParams(model), tokenizer, options);
  writeFileAtomic(file, bytes);
  return { file, bytes: bytes.length, tensors, type, dtype: type };
}

/** Options of {@link exportLoraGguf}. */
export interface GgufLoraExportOptions {
  /** `general.name` (default: the adapter's name). */
  name?: string;
  /** Replace an existing file (default false). */
  overwrite?: boolean;
}

/** What {@link exportLoraGguf} wrote. */
export interface GgufLoraExportResult {
  file: string;
  bytes: number;
  /** Number of tensors (two per adapted layer). */
  tensors: number;
  /** `adapter.lora.alpha` as written (α, or α·√r for rsLoRA, so that llama.cpp's α/r is the adapter's scale). */
  alpha: number;
}

/**
 * Writes a LoRA adapter as a llama.cpp adapter GGUF (as `convert_lora_to_gguf.py` does), to load on top of
 * the base model's GGUF (`llama-cli --lora file`, node-llama-cpp's `createContext({ lora })`).
 * Metadata: `general.type = "adapter"`, `adapter.type = "lora"`, `adapter.lora.alpha`; llama.cpp scales by
 * alpha / r. Tensors, f32: `blk.N.<tensor>.weight.lora_a` = PEFT's lora_A [r, in] (ggml dims [in, r]) and
 * `.lora_b` = lora_B [out, r] (ggml [r, out]), the q/k lora_b rows permuted for llama.cpp's RoPE like the
 * base weights. DoRA, bias deltas and merged adapters have no llama.cpp form and are refused.
 *
 * @example
 * await exportGguf(base, tokenizer, 'base.gguf');
 * await exportLoraGguf(model, 'default', 'lora.gguf');
 * // llama-cli -m base.gguf --lora lora.gguf -p "Say hello." -n 16 --temp 0
 */
export async function exportLoraGguf(model: CausalLM, adapterName: string, file: string, options: GgufLoraExportOptions = {}): Promise<GgufLoraExportResult> {
  const fail = (msg: string): never => { throw new Error(`exportLoraGguf: adapter "${adapterName}": ${msg}`); };
  const c = model.config;
  if (c.family !== 'llama') fail(`the ${c.family} family cannot be exported to GGUF (llama only)`);
  const adapter = peft(model).get(adapterName);
  if (!(adapter instanceof LoraAdapter)) return fail(`is ${adapter.peftType}, not LoRA; only LoRA adapters have a llama.cpp GGUF form`);
  if (adapter.config.useDora) fail('is DoRA; llama.cpp adapters are plain LoRA');
  if (adapter.biasTargets.length) fail(`has bias deltas (bias = "${adapter.config.bias}"); llama.cpp LoRA adapters have none`);
  if (adapter.merged) fail('is merged into the weights; unmerge it first');
  if (!options.overwrite && fs.existsSync(file)) throw new Error(`${file}: already exists; pass overwrite: true (CLI: --overwrite) to replace it`);
  const tensors: OutTensor[] = [];
  for (const path of adapter.loraTargets) {
    const name = llamaLinearName(path) ?? fail(`targets "${path}", which has no llama.cpp tensor`);
    const host = async (key: string): Promise<HostTensor> => {
      const v = adapter.weights.get(`${path}.${key}`) ?? fail(`has no ${key} for "${path}"`);
      return { shape: [...v.shape], data: (await v.data()) as Float32Array };
    };
    const a = transpose2d(await host('lora_A')); // [r, in]
    let b = transpose2d(await host('lora_B')); // [out, r]
    const heads = ropeHeads(c, name);
    if (heads !== undefined) b = permuteRope(b, heads);
    tensors.push({ name: `${name}.weight.lora_a`, shape: a.shape, data: a.data, type: GgmlType.F32 });
    tensors.push({ name: `${name}.weight.lora_b`, shape: b.shape, data: b.data, type: GgmlType.F32 });
  }
  // llama.cpp's scale is alpha / r; rsLoRA's is α/√r, i.e. alpha = α·√r.
  const { r, alpha: a0, useRslora } = adapter.config;
  const alpha = useRslora ? a0 * Math.sqrt(r) : a0;
  const meta: Meta[] = [
    { key: 'general.architecture', type: GgufValueType.STRING, value: 'llama' },
    { key: 'general.type', type: GgufValueType.STRING, value: 'adapter' },
    { key: 'general.name', type: GgufValueType.STRING, value: options.name ?? adapterName },
    { key: 'general.alignment', type: GgufValueType.UINT32, value: ALIGNMENT },
    { key: 'adapter.type', type: GgufValueType.STRING, value: 'lora' },
    { key: 'adapter.lora.alpha', type: GgufValueType.FLOAT32, value: alpha },
  ];
  const bytes = writeGguf(meta, tensors);
  writeFileAtomic(file, bytes);
  return { file, bytes: bytes.length, tensors: tensors.length, alpha };
}

// ---------------------------------------------------------------------------------------------------
// Reading (for checks and tests)

/**
 * Parses GGUF bytes: header, metadata and tensor infos; tensors decode lazily with `read(name)`.
 * Errors name the source and the offset where the file stops making sense.
 *
 * @example
 * const g = parseGguf(fs.readFileSync('tiny.gguf'), 'tiny.gguf');
 * g.metadata.get('general.architecture'); // 'llama'
 */
export function parseGguf(bytes: Uint8Array, source = '<buffer>'): GgufFile {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let pos = 0;
  const fail = (msg: string): never => { throw new Error(`${source}: ${msg} (at byte ${pos})`); };
  const need = (n: number) => { if (pos + n > bytes.length) fail(`truncated: needs ${n} more bytes`); };
  const u32 = () => { need(4); const v = view.getUint32(pos, true); pos += 4; return v; };
  const u64 = () => { need(8); const v = view.getBigUint64(pos, true); pos += 8; return v; };
  const size = () => { const v = u64(); if (v > BigInt(Number.MAX_SAFE_INTEGER)) fail('size too large'); return Number(v); };
  const str = () => { const n = size(); need(n); const s = new TextDecoder('utf-8', { fatal: true }).decode(bytes.subarray(pos, pos + n)); pos += n; return s; };
  const scalar = (type: number): GgufValue => {
    switch (type) {
      case GgufValueType.UINT8: need(1); return view.getUint8(pos++);
      case GgufValueType.INT8: need(1); return view.getInt8(pos++);
      case GgufValueType.UINT16: { need(2); const v = view.getUint16(pos, true); pos += 2; return v; }
      case GgufValueType.INT16: { need(2); const v = view.getInt16(pos, true); pos += 2; return v; }
      case GgufValueType.UINT32: return u32();
      case GgufValueType.INT32: { need(4); const v = view.getInt32(pos, true); pos += 4; return v; }
      case GgufValueType.FLOAT32: { need(4); const v = view.getFloat32(pos, true); pos += 4; return v; }
      case GgufValueType.BOOL: { need(1); const v = view.getUint8(pos++); if (v > 1) fail(`bool value ${v}`); return v === 1; }
      case GgufValueType.STRING: return str();
      case GgufValueType.UINT64: return u64();
      case GgufValueType.INT64: { need(8); const v = view.getBigInt64(pos, true); pos += 8; return v; }
      case GgufValueType.FLOAT64: { need(8); const v = view.getFloat64(pos, true); pos += 8; return v; }
      default: return fail(`unknown value type ${type}`);
    }
  };
  if (u32() !== GGUF_MAGIC) fail('not a GGUF file (bad magic)');
  const version = u32();
  if (version !== 2 && version !== 3) fail(`unsupported GGUF version ${version}`);
  const nTensors = size();
  const nMeta = size();
  const metadata = new Map<string, GgufValue>();
  const metadataTypes = new Map<string, number[]>();
  for (let i = 0; i < nMeta; i++) {
    const key = str();
    const type = u32();
    if (type === GgufValueType.ARRAY) {
      const elem = u32();
      if (elem === GgufValueType.ARRAY) fail(`nested arrays are not supported (key ${key})`);
      const n = size();
      const arr: GgufValue[] = [];
      for (let j = 0; j < n; j++) arr.push(scalar(elem));
      metadata.set(key, arr);
      metadataTypes.set(key, [type, elem]);
    } else {
      metadata.set(key, scalar(type));
      metadataTypes.set(key, [type]);
    }
  }
  const alignment = typeof metadata.get('general.alignment') === 'number' ? (metadata.get('general.alignment') as number) : ALIGNMENT;
  const tensors: GgufTensorInfo[] = [];
  for (let i = 0; i < nTensors; i++) {
    const name = str();
    const nDims = u32();
    const dims: number[] = [];
    for (let d = 0; d < nDims; d++) dims.push(size());
    const type = u32();
    const offset = size();
    if (offset % alignment !== 0) fail(`tensor ${name} offset ${offset} is not a multiple of the alignment ${alignment}`);
    const elems = dims.reduce((a, b) => a * b, 1);
    const byteLength = type === GgmlType.F32 ? elems * 4 : type === GgmlType.F16 ? elems * 2
      : type === GgmlType.Q8_0 && dims[0] % QK === 0 ? (elems / QK) * Q8_0_BLOCK_BYTES
        : type === GgmlType.Q4_0 && dims[0] % QK === 0 ? (elems / QK) * Q4_0_BLOCK_BYTES : -1;
    tensors.push({ name, dims, type, offset, byteLength });
  }
  const dataStart = Math.ceil(pos / alignment) * alignment;
  for (const t of tensors) {
    if (t.byteLength >= 0 && dataStart + t.offset + t.byteLength > bytes.length) {
      throw new Error(`${source}: tensor ${t.name} runs past the end of the file`);
    }
  }
  const byName = new Map(tensors.map((t) => [t.name, t]));
  return {
    version, metadata, metadataTypes, tensors, alignment, dataStart,
    read(name: string): HostTensor {
      const t = byName.get(name);
      if (!t) throw new Error(`${source}: no tensor "${name}"`);
      if (t.byteLength < 0) throw new Error(`${source}: tensor "${name}" has ggml type ${t.type} and dims [${t.dims}]; only F32, F16, Q8_0 and Q4_0 (rows a multiple of ${QK}) can be decoded`);
      const raw = bytes.slice(dataStart + t.offset, dataStart + t.offset + t.byteLength);
      const data = t.type === GgmlType.F32 ? new Float32Array(raw.buffer, raw.byteOffset, raw.byteLength / 4)
        : t.type === GgmlType.F16 ? fromF16Bytes(raw) : t.type === GgmlType.Q8_0 ? dequantizeQ8_0(raw) : dequantizeQ4_0(raw);
      return { shape: [...t.dims].reverse(), data };
    },
  };
}

/**
 * Reads and parses a GGUF file (see {@link parseGguf}).
 *
 * @example
 * const g = readGguf('tiny.gguf');
 * g.tensors.map((t) => t.name); // ['token_embd.weight', 'blk.0.attn_norm.weight', ...]
 */
export function readGguf(file: string): GgufFile {
  return parseGguf(fs.readFileSync(file), file);
}
