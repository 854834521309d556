/**
 * The decoder-only transformer (nanoGPT's model.py, in tfjs): parameters live in one named map so
 * checkpoints, optimizers and PEFT methods address them by path, e.g. `layers.3.attn.q_proj.weight`.
 */
import * as tf from '@tensorflow/tfjs';
import { requireEngine } from '../engine/backend';
import { ModelConfig, headDim, modelConfig, validateConfig } from './config';
import { gelu, layerNorm, linear, rmsNorm, ropeTables, rotateHalfMatrix, swiglu, dropout } from './layers';
import { KVCache, attentionMask, scaledDotProductAttention } from './attention';
import { inspect } from 'util';
import { mimeBundleKey } from '../viz/display';
import { summaryBundle } from '../viz/summary';
import type { QuantizedMatrix } from './quant';
import { quantGather, quantMatMul } from './quant-ops';
import { checkpoint, type CheckpointVariables } from './checkpoint';

/** What a linear hook knows about the forward pass it runs in (adapter dropout needs both). */
export interface LinearContext {
  training: boolean;
  /** The forward call's dropout seed, when it has one; hooks derive their own from it and the path. */
  seed?: number;
  /** Rows B of the forward call: a hook's x has B·T rows (sequence-level routing needs the split). */
  batch?: number;
}

/**
 * Replaces a linear layer's forward pass; `base` runs the original x·W + b. LoRA, bottleneck adapters
 * and IA3 use it. x: (N, in) → (N, out).
 */
export type LinearHook = (x: tf.Tensor2D, base: (x: tf.Tensor2D) => tf.Tensor2D, path: string, ctx: LinearContext) => tf.Tensor2D;

/** Rewrites token embeddings (B, T, d) before the first block (same shape; virtual tokens use {@link VirtualTokensHook}). */
export type EmbeddingHook = (embeddings: tf.Tensor3D, inputIds: tf.Tensor2D) => tf.Tensor3D;

/**
 * Prefix tuning (Li & Liang, arXiv 2101.00190): key/value prefixes (B, n_kv_heads, P, hd) of layer
 * `layer` that every query attends to. They go before the keys after RoPE (learned directly in the
 * rotated space, as Hugging Face's `past_key_values`), and like a past they take positions 0..P-1: real
 * tokens start at position P (what HF models do with PEFT's prefix as past_key_values), so P + T must
 * fit `contextLength`.
 */
export type PrefixHook = (layer: number, batch: number) => { k: tf.Tensor4D; v: tf.Tensor4D };

/**
 * Prompt tuning (Lester et al., arXiv 2104.08691): virtual-token embeddings (B, P, d) put before the
 * token embeddings. They take positions 0..P-1 and real tokens shift by P (as PEFT), so P + T must fit
 * `contextLength`; the model returns hidden states/logits of the real tokens only.
 */
export type VirtualTokensHook = (batch: number) => tf.Tensor3D;

/** Options of {@link CausalLM.forward}. */
export interface ForwardOptions {
  /** Enables dropout (needs `seed`). */
  training?: boolean;
  /** Seed for this call's dropout masks; the trainer derives one per step so runs are reproducible. */
  seed?: number;
  /** Incremental decoding: keys/values of earlier positions; updated in place. */
  cache?: KVCache;
  /**
   * (B, T) document ids of packed sequences: tokens attend only within their own document. Prefixes and
   * virtual tokens belong to no document: every document sees them, as if it ran alone.
   */
  segmentIds?: tf.Tensor2D;
  /**
   * (B, T) absolute positions (default 0..T-1, or continuing the cache). With prefixes or virtual tokens
   * they count real tokens from 0 and the model adds the P positions those take (so packed documents,
   * whose positions restart at 0, each see the prefix as if alone).
   */
  positionIds?: tf.Tensor2D;
}

/** One parameter: its variable and whether optimizers may change it. */
export interface Parameter {
  variable: tf.Variable;
  trainable: boolean;
}

/**
 * A causal language model of the {@link ModelConfig} family.
 *
 * @example
 * const model = new CausalLM(modelConfig({ family: 'llama', vocabSize: 512 }), { seed: 1 });
 * const logits = model.forward(tf.tensor2d([[1, 2, 3]], [1, 3], 'int32')); // (1, 3, 512)
 */
export class CausalLM {
  readonly config: ModelConfig;
  /** Every parameter of the base model by path; tied heads have no `lm_head.weight` entry. */
  readonly params = new Map<string, Parameter>();
  /**
   * Parameters that PEFT methods add (`adapters.<name>.<key>`): trained with the model, never part of
   * the base checkpoint, counted in trainable counts but not in the base size.
   */
  readonly adapterParams = new Map<string, Parameter>();
  /**
   * Frozen base weights stored quantized (int8 / NF4, see `./quant`), by path; such a path is no longer
   * in `params`. `quantizeBase` fills it; projections decode on the fly in {@link linear}.
   */
  readonly quantized = new Map<string, QuantizedMatrix>();
  /**
   * Hooks that PEFT methods install: linear layers by path, the input embedding, and the prefixes /
   * virtual tokens of prompt learning. Without hooks the forward pass runs no extra op.
   */
  readonly hooks: {
    linear: Map<string, LinearHook>; embedding?: EmbeddingHook; prefix?: PrefixHook; virtualTokens?: VirtualTokensHook;
    /** Positions the prefix / virtual-token hooks take, as the adapter registry counts them from the adapters' configs. */
    reservedPositions?: number;
  } = { linear: new Map() };
  /**
   * Recompute each decoder block in the backward pass instead of keeping its activations (Hugging Face's
   * `gradient_checkpointing`): less memory per step, one more forward. The trainer turns it on for its
   * gradient computation when `TrainConfig.gradientCheckpointing` is set; it refuses a KV cache.
   */
  gradientCheckpointing = false;
  private readonly rope?: { cos: tf.Tensor2D; sin: tf.Tensor2D; rotate: tf.Tensor2D };
  /** Every base parameter path in forward order, as the constructor created them. */
  private readonly paramOrder: readonly string[];

  constructor(config: ModelConfig, options: { seed?: number } = {}) {
    requireEngine('CausalLM.create');
    validateConfig(config);
    this.config = { ...config };
    const c = this.config;
    let seed = options.seed ?? 0;
    // tfjs treats seed 0 as "unseeded" (Math.random): map it to another fixed seed so seed 0 is reproducible too.
    const normal = (shape: number[], std: number) => tf.randomNormal(shape, 0, std, 'float32', seed++ || 0x7fffffff);
    const add = (name: string, init: tf.Tensor) => {
      this.params.set(name, { variable: tf.variable(init, true), trainable: true });
      init.dispose();
    };
    const hd = headDim(c);
    const residualStd = c.initStd / Math.sqrt(2 * c.nLayers);
    const gpt2 = c.family === 'gpt2';
    const norm = (name: string) => {
      add(`${name}.weight`, tf.ones([c.dModel]));
      if (gpt2) add(`${name}.bias`, tf.zeros([c.dModel]));
    };
    const lin = (name: string, inDim: number, outDim: number, std = c.initStd) => {
      add(`${name}.weight`, normal([inDim, outDim], std));
      if (gpt2) add(`${name}.bias`, tf.zeros([outDim]));
    };
    add('embed_tokens.weight', normal([c.vocabSize, c.dModel], c.initStd));
    if (gpt2) add('embed_positions.weight', normal([c.contextLength, c.dModel], c.initStd / 2));
    for (let i = 0; i < c.nLayers; i++) {
      const p = `layers.${i}`;
      norm(`${p}.attn_norm`);
      lin(`${p}.attn.q_proj`, c.dModel, c.nHeads * hd);
      lin(`${p}.attn.k_proj`, c.dModel, c.nKvHeads * hd);
      lin(`${p}.attn.v_proj`, c.dModel, c.nKvHeads * hd);
      lin(`${p}.attn.o_proj`, c.nHeads * hd, c.dModel, residualStd);
      norm(`${p}.mlp_norm`);
      if (!gpt2) lin(`${p}.mlp.gate_proj`, c.dModel, c.dFf);
      lin(`${p}.mlp.up_proj`, c.dModel, c.dFf);
      lin(`${p}.mlp.down_proj`, c.dFf, c.dModel, residualStd);
    }
    norm('norm');
    if (!c.tieEmbeddings) lin('lm_head', c.dModel, c.vocabSize);
    this.paramOrder = [...this.params.keys()];
    if (!gpt2) {
      const positions = Array.from({ length: c.contextLength }, (_, i) => i);
      this.rope = { ...ropeTables(positions, hd, c.ropeTheta), rotate: rotateHalfMatrix(hd) };
    }
  }

  /** Builds a model from a partial config (family defaults fill the rest). */
  static create(config: Partial<ModelConfig> = {}, options: { seed?: number } = {}): CausalLM {
    return new CausalLM(modelConfig(config), options);
  }

  /** The variable at `path`; throws naming the path when absent. */
  weight(path: string): tf.Variable {
    const p = this.params.get(path);
    const q = this.quantized.get(path);
    if (q) throw new Error(`model parameter "${path}" is stored quantized (${q.format}) and frozen; dequantizeBase(model) restores float32 weights`);
    if (!p) throw new Error(`model has no parameter "${path}"`);
    return p.variable;
  }

  /** Shape of the weight at `path`, float32 or quantized. */
  weightShape(path: string): number[] {
    const q = this.quantized.get(path);
    return q ? [...q.shape] : this.weight(path).shape;
  }

  /** Paths of every linear layer (without `.weight`), in forward order, e.g. `layers.0.attn.q_proj`. */
  linearPaths(): string[] {
    // The constructor's order is the forward order; quantized paths keep their place in it.
    return this.paramOrder.filter((k) => /(_proj|lm_head)\.weight$/.test(k) && (this.params.has(k) || this.quantized.has(k)))
      .map((k) => k.slice(0, -'.weight'.length));
  }

  /** Marks parameters whose path matches as trainable or frozen; returns how many matched. */
  setTrainable(match: RegExp | ((path: string) => boolean), trainable: boolean): number {
    const test = typeof match === 'function' ? match : (p: string) => match.test(p);
    let n = 0;
    for (const [path, p] of this.params) if (test(path)) { p.trainable = trainable; n++; }
    return n;
  }

  /** Trainable parameters by path: base parameters, then adapter parameters. */
  trainableParams(): Map<string, tf.Variable> {
    return new Map([...this.params, ...this.adapterParams].filter(([, p]) => p.trainable).map(([k, p]) => [k, p.variable]));
  }

  /**
   * Parameter count (tied weights once). Default: the base model's size, adapters excluded (the
   * denominator of "% of base"); `trainableOnly`: every trainable parameter, adapters included.
   */
  paramCount(trainableOnly = false): number {
    let n = 0;
    if (!trainableOnly) for (const p of [...this.params.values(), ...this.quantized.values()]) n += 'variable' in p ? p.variable.size : p.size;
    else for (const p of [...this.params.values(), ...this.adapterParams.values()]) if (p.trainable) n += p.variable.size;
    return n;
  }

  /** The printed form (`console.log(model)`, a notebook cell's value): architecture and sizes, not the weights. */
  [mimeBundleKey](): { 'text/plain': string; 'text/html': string } {
    const c = this.config;
    const n = (x: number) => x.toLocaleString('en-US');
    const trainable = this.paramCount(true);
    return summaryBundle(`CausalLM (${c.family})`, [
      ['parameters', `${n(this.paramCount())}${this.adapterParams.size ? `, adapters ${n([...this.adapterParams.values()].reduce((s, p) => s + p.variable.size, 0))}` : ''}, trainable ${n(trainable)}`],
      ['layers', `${c.nLayers} × (d_model ${c.dModel}, ${c.nHeads} heads, ${c.nKvHeads} kv heads, d_ff ${c.dFf})`],
      ['vocabulary', n(c.vocabSize)],
      ['context', `${n(c.contextLength)} tokens`],
    ]);
  }

  [inspect.custom](): string {
    return this[mimeBundleKey]()['text/plain'];
  }

  /**
   * A copy of the base model: same config, weights and trainable flags, no hooks or adapters. Used
   * to keep a model (e.g. the reference of DPO, or the "before" of a comparison) while training another.
   */
  clone(): CausalLM {
    const copy = new CausalLM(this.config, { seed: 0 });
    for (const [path, p] of this.params) {
      const target = copy.params.get(path)!;
      target.variable.assign(p.variable);
      target.trainable = p.trainable;
    }
    // Quantized matrices are immutable: the copy shares them and drops its own float32 variables.
    for (const [path, q] of this.quantized) {
      copy.params.get(path)!.variable.dispose();
      copy.params.delete(path);
      copy.quantized.set(path, q);
    }
    return copy;
  }

  /**
   * Forward FLOPs per token at sequence length `seqLen` (Kaplan et al., arXiv 2001.08361, eq. 2.2):
   * 2·N_non-embedding + 2·n_layers·seqLen·d_attn, plus the output head. Training costs ≈ 3× this.
   */
  flopsPerToken(seqLen = this.config.contextLength): number {
    const c = this.config;
    const embedding = this.weightShape('embed_tokens.weight').reduce((x, y) => x * y, 1) + (this.params.get('embed_positions.weight')?.variable.size ?? 0);
    const nonEmbedding = this.paramCount() - embedding - (c.tieEmbeddings ? 0 : c.vocabSize * c.dModel);
    return 2 * nonEmbedding + 2 * c.nLayers * seqLen * c.dModel + 2 * c.dModel * c.vocabSize;
  }

  /** Runs linear layer `path` on x (N, in), through its hook if one is installed. */
  linear(path: string, x: tf.Tensor2D, ctx: LinearContext = { training: false }): tf.Tensor2D {
    const q = this.quantized.get(`${path}.weight`);
    const bias = this.params.get(`${path}.bias`)?.variable;
    const base = q ? (input: tf.Tensor2D) => (bias ? tf.add(quantMatMul(input, q), bias) as tf.Tensor2D : quantMatMul(input, q))
      : (input: tf.Tensor2D) => linear(input, this.weight(`${path}.weight`), bias);
    const hook = this.hooks.linear.get(path);
    return hook ? hook(x, base, path, ctx) : base(x);
  }

  private norm(path: string, x: tf.Tensor): tf.Tensor {
    const w = this.weight(`${path}.weight`);
    return this.config.family === 'gpt2'
      ? layerNorm(x, w, this.weight(`${path}.bias`), this.config.normEps)
      : rmsNorm(x, w, this.config.normEps);
  }

  /** Token embeddings (B, T, d), through the embedding hook if one is installed. */
  embed(inputIds: tf.Tensor2D): tf.Tensor3D {
    const q = this.quantized.get('embed_tokens.weight');
    const x = (q ? quantGather(q, inputIds) : tf.gather(this.weight('embed_tokens.weight'), inputIds)) as tf.Tensor3D;
    return this.hooks.embedding ? this.hooks.embedding(x, inputIds) : x;
  }

  /** Final hidden states (B, T, d) → logits (B, T, V). */
  head(h: tf.Tensor3D, ctx: LinearContext = { training: false, batch: h.shape[0] }): tf.Tensor3D {
    const [b, t, d] = h.shape;
    const h2 = tf.reshape(h, [b * t, d]) as tf.Tensor2D;
    const q = this.quantized.get('embed_tokens.weight');
    // Tied head: h·Eᵀ. With few rows (decoding), E·hᵀ transposed back is far cheaper: the transposed
    // operand is then the small h, not the (vocab, d) table (wasm materialises transposes).
    const tied = (embeddings: tf.Tensor2D) => (b * t < 16 ? tf.transpose(tf.matMul(embeddings, h2, false, true)) as tf.Tensor2D
      : tf.matMul(h2, embeddings, false, true));
    const logits = !this.config.tieEmbeddings ? this.linear('lm_head', h2, ctx)
      : q ? quantMatMul(h2, q, true) : tied(this.weight('embed_tokens.weight') as tf.Tensor2D);
    return tf.reshape(logits, [b, t, this.config.vocabSize]);
  }

  /**
   * Positions the installed prefix / virtual-token hooks take before the real tokens (0 without them);
   * generation keeps its window within `contextLength` minus this. The adapter registry keeps the count.
   */
  reservedPositions(): number {
    return this.hooks.reservedPositions ?? 0;
  }

  /**
   * Hidden states after the final norm: (B, T) ids → (B, T, d). Prefix / virtual-token hooks enter
   * when there is no cache or it is empty (then they go into the cache, so later steps attend to them);
   * the output covers the real tokens only.
   */
  hidden(inputIds: tf.Tensor2D, options: ForwardOptions = {}): tf.Tensor3D {
    const c = this.config;
    const { training = false, cache } = options;
    const rate = training ? c.dropout : 0;
    let seed = options.seed;
    const nextSeed = () => (seed === undefined ? undefined : seed++);
    let x = this.embed(inputIds);
    const b = x.shape[0];
    const fresh = !cache || cache.length === 0;
    const prefixes = fresh && this.hooks.prefix ? Array.from({ length: c.nLayers }, (_, i) => this.hooks.prefix!(i, b)) : undefined;
    const nPrefix = prefixes ? prefixes[0].k.shape[2] : 0;
    const virtual = fresh && this.hooks.virtualTokens ? this.hooks.virtualTokens(b) : undefined;
    const nVirtual = virtual ? virtual.shape[1] : 0;
    if (virtual) x = tf.concat([virtual, x], 1);
    const reserved = nPrefix + nVirtual;
    const t = x.shape[1];
    // A prefix acts as a past of nPrefix positions: real keys and queries start after it.
    const offset = (cache?.length ?? 0) + nPrefix;
    if (offset + t > c.contextLength) {
      const note = reserved ? ` (${reserved} of them prefix / virtual tokens)` : '';
      throw new Error(`sequence of ${offset + t} tokens${note} exceeds contextLength ${c.contextLength}`);
    }
    if (cache && reserved) cache.reserved = reserved;
    let positions = options.positionIds ?? null;
    const shift = fresh ? reserved : cache!.reserved;
    if (positions && shift) {
      positions = tf.add(positions, tf.scalar(shift, positions.dtype)) as tf.Tensor2D;
      if (nVirtual) {
        const own = tf.tile(tf.expandDims(tf.range(nPrefix, reserved, 1, 'int32'), 0), [b, 1]);
        positions = tf.concat([own, positions], 1) as tf.Tensor2D;
      }
    }
    let rope: { cos: tf.Tensor; sin: tf.Tensor; rotate: tf.Tensor2D } | undefined;
    if (this.rope) {
      rope = positions
        ? { cos: tf.expandDims(tf.gather(this.rope.cos, positions), 1), sin: tf.expandDims(tf.gather(this.rope.sin, positions), 1), rotate: this.rope.rotate }
        : { cos: tf.slice(this.rope.cos, [offset, 0], [t, -1]), sin: tf.slice(this.rope.sin, [offset, 0], [t, -1]), rotate: this.rope.rotate };
    } else {
      const pos = positions ?? tf.range(offset, offset + t, 1, 'int32');
      x = tf.add(x, tf.gather(this.weight('embed_positions.weight'), pos)) as tf.Tensor3D;
    }
    x = dropout(x, rate, nextSeed()) as tf.Tensor3D;
    const mask = attentionMask(t, offset + t, options.segmentIds, reserved);
    const lc: LinearContext = { training, seed: options.seed, batch: b };
    const lin = (path: string, y: tf.Tensor2D) => this.linear(path, y, lc);
    const hd = headDim(c);
    const groups = c.nHeads / c.nKvHeads;
    const heads = (y: tf.Tensor2D, n: number) => tf.transpose(tf.reshape(y, [b, t, n, hd]), [0, 2, 1, 3]) as tf.Tensor4D;
    type Rope = typeof rope;
    // One decoder block; its dropout seeds come in drawn, so a checkpointed recompute uses the same masks.
    const block = (i: number, x: tf.Tensor3D, rope: Rope, mask: tf.Tensor4D, prefix: { k: tf.Tensor4D; v: tf.Tensor4D } | undefined, seeds: (number | undefined)[]) => {
      const p = `layers.${i}`;
      const h = tf.reshape(this.norm(`${p}.attn_norm`, x), [b * t, c.dModel]) as tf.Tensor2D;
      const q = heads(lin(`${p}.attn.q_proj`, h), c.nHeads);
      const k = heads(lin(`${p}.attn.k_proj`, h), c.nKvHeads);
      const v = heads(lin(`${p}.attn.v_proj`, h), c.nKvHeads);
      const att = scaledDotProductAttention({ q, k, v, rope, mask, prefix, dropoutRate: rate, dropoutSeed: seeds[0] }, groups, cache && { i, cache });
      const merged = tf.reshape(tf.transpose(att, [0, 2, 1, 3]), [b * t, c.nHeads * hd]) as tf.Tensor2D;
      const attnOut = tf.reshape(lin(`${p}.attn.o_proj`, merged), [b, t, c.dModel]);
      x = tf.add(x, dropout(attnOut, rate, seeds[1])) as tf.Tensor3D;
      const m = tf.reshape(this.norm(`${p}.mlp_norm`, x), [b * t, c.dModel]) as tf.Tensor2D;
      const inner = c.family === 'gpt2'
        ? gelu(lin(`${p}.mlp.up_proj`, m))
        : swiglu(lin(`${p}.mlp.gate_proj`, m), lin(`${p}.mlp.up_proj`, m));
      const mlpOut = tf.reshape(lin(`${p}.mlp.down_proj`, inner as tf.Tensor2D), [b, t, c.dModel]);
      return tf.add(x, dropout(mlpOut, rate, seeds[2])) as tf.Tensor3D;
    };
    if (this.gradientCheckpointing && cache) throw new Error('gradientCheckpointing cannot be combined with a KV cache (decoding needs no gradients): set model.gradientCheckpointing = false to generate');
    const owned = this.gradientCheckpointing ? blockVariables(this.trainableParams(), c.nLayers) : undefined;
    for (let i = 0; i < c.nLayers; i++) {
      const seeds = [nextSeed(), nextSeed(), nextSeed()];
      const prefix = prefixes?.[i];
      if (!owned) {
        x = block(i, x, rope, mask, prefix, seeds);
        continue;
      }
      const fixed = rope ? [mask, rope.cos, rope.sin] : [mask];
      x = checkpoint((d, f) => block(i, d[0] as tf.Tensor3D, rope && { cos: f[1], sin: f[2], rotate: rope.rotate }, f[0] as tf.Tensor4D,
        prefix && { k: d[1] as tf.Tensor4D, v: d[2] as tf.Tensor4D }, seeds),
      { differentiable: prefix ? [x, prefix.k, prefix.v] : [x], fixed }, owned[i], `layers.${i}`) as tf.Tensor3D;
    }
    // Virtual positions are dropped here so every objective and metric sees the real tokens only.
    if (nVirtual) x = tf.slice(x, [0, nVirtual, 0], [-1, -1, -1]);
    return this.norm('norm', x) as tf.Tensor3D;
  }

  /** Logits (B, T, V) for input ids (B, T) int32. Call inside `tf.tidy` (intermediates are not disposed). */
  forward(inputIds: tf.Tensor2D, options: ForwardOptions = {}): tf.Tensor3D {
    return this.head(this.hidden(inputIds, options), { training: options.training ?? false, seed: options.seed, batch: inputIds.shape[0] });
  }

  /** Frees every variable and table of the model, adapters included. */
  dispose(): void {
    for (const p of [...this.params.values(), ...this.adapterParams.values()]) p.variable.dispose();
    this.params.clear();
    this.adapterParams.clear();
    if (this.rope) tf.dispose([this.rope.cos, this.rope.sin, this.rope.rotate]);
  }
}

/**
 * Trainable variables of each decoder block: base weights `layers.<i>.…` and adapter weights whose key
 * holds `layers.<i>.` (`adapters.<name>.layers.<i>.…`); every other trainable variable is listed as
 * "not its own", so a block that reads one fails loudly instead of losing that gradient.
 */
function blockVariables(trainable: Map<string, tf.Variable>, nLayers: number): CheckpointVariables[] {
  const own: tf.Variable[][] = Array.from({ length: nLayers }, () => []);
  const layerOf = new Map<number, number>();
  for (const [path, v] of trainable) {
    const i = /(?:^|\.)layers\.(\d+)\./.exec(path);
    if (i && +i[1] < nLayers) {
      own[+i[1]].push(v);
      layerOf.set(v.id, +i[1]);
    }
  }
  return own.map((vars, i) => ({
    own: vars,
    others: new Map([...trainable].filter(([, v]) => layerOf.get(v.id) !== i).map(([path, v]) => [v.id, path])),
  }));
}
