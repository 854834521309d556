/**
 * Prefix tuning (Li & Liang, arXiv 2101.00190) as Hugging Face PEFT's `PREFIX_TUNING`: every layer gets P
 * learned key/value vectors that all queries attend to, while the base model stays frozen.
 *
 * Layout follows PEFT so weights translate one to one: the prefix of all layers is one matrix
 * `prompt_embeddings` [P, n_layers·2·token_dim] whose columns run layer → (key, value) → kv head → head dim,
 * with `token_dim` = n_kv_heads·head_dim (PEFT shrinks token_dim and num_attention_heads to the kv heads
 * for grouped-query models, peft#1901; for gpt2 it is d_model).
 */
import * as tf from '@tensorflow/tfjs';
import { KVCache } from '../model/attention';
import { headDim } from '../model/config';
import type { CausalLM } from '../model/transformer';
import { Adapter, peft } from './peft';
import { withDefaults } from '../util/options';
import { AdapterFile, configNumber, registerAdapterLoader } from './io';

/** Options of {@link addPrefixTuning}; field names are PEFT's in camelCase. */
export interface PrefixTuningConfig {
  /**
   * P, prefix positions per layer (PEFT's `num_virtual_tokens`, default 20). A prefix acts as P earlier
   * positions, so P + sequence length must fit `contextLength` (20 of the shipped model's 128).
   */
  numVirtualTokens: number;
  /** Reparameterise as embedding [P, token_dim] → Linear → tanh → Linear (PEFT's `prefix_projection`, default false). */
  prefixProjection: boolean;
  /** Hidden width of that MLP (PEFT's `encoder_hidden_size`; default token_dim). */
  encoderHiddenSize?: number;
  /**
   * - `'random'` (default): prefixes N(0, initStd); with projection the embedding is N(0, 1) and the
   *   Linears use torch's default init, as PEFT.
   * - `'zero'`: PEFT's `init_weights: "zero"` (zero prefixes; with projection the last Linear is zero).
   * - `{ tokens }`: the base model's keys/values of P real tokens, Li & Liang's initialisation by
   *   activations of real words (without projection only): the adapter then starts out exactly as if
   *   those tokens preceded every input.
   */
  initFrom: 'random' | 'zero' | { tokens: readonly number[] };
  /**
   * Std of random prefixes without projection. Default: the model's `initStd`, so prefixes start on the
   * scale of the model's own keys/values (PEFT's torch Embedding draws N(0, 1); pass 1 to match it).
   */
  initStd?: number;
  /** Seed of the random initialisation. */
  seed: number;
}

/** Defaults of {@link PrefixTuningConfig} (PEFT's). */
export const prefixTuningDefaults: Readonly<Omit<PrefixTuningConfig, 'encoderHiddenSize' | 'initStd'>> = Object.freeze({
  numVirtualTokens: 20, prefixProjection: false, initFrom: 'random', seed: 0,
});

const KNOWN = ['numVirtualTokens', 'prefixProjection', 'encoderHiddenSize', 'initFrom', 'initStd', 'seed'];

/** A prefix-tuning adapter on one model (see {@link addPrefixTuning}). */
export class PrefixTuning implements Adapter {
  readonly peftType = 'PREFIX_TUNING' as const;
  /** The prefix / virtual tokens take `numVirtualTokens` positions before the real tokens. */
  get reservedPositions(): number {
    return this.config.numVirtualTokens;
  }
  readonly targets: readonly string[] = [];
  readonly weights = new Map<string, tf.Variable>();
  readonly config: Readonly<PrefixTuningConfig> & { encoderHiddenSize: number; initStd: number };
  /** PEFT's token_dim: n_kv_heads · head_dim. */
  readonly tokenDim: number;
  private readonly nLayers: number;
  private readonly nKvHeads: number;
  private readonly headDim: number;

  constructor(model: CausalLM, config: Partial<PrefixTuningConfig> = {}) {
    for (const k of Object.keys(config)) if (!KNOWN.includes(k)) throw new Error(`prefix tuning: unknown option "${k}" (options: ${KNOWN.join(', ')})`);
    const mc = model.config;
    this.nLayers = mc.nLayers;
    this.nKvHeads = mc.nKvHeads;
    this.headDim = headDim(mc);
    this.tokenDim = this.nKvHeads * this.headDim;
    const c = withDefaults({ ...prefixTuningDefaults, encoderHiddenSize: this.tokenDim, initStd: mc.initStd }, config, 'prefixTuning');
    this.config = c;
    const p = c.numVirtualTokens;
    if (!Number.isInteger(p) || p <= 0) throw new Error(`prefix tuning: numVirtualTokens must be a positive integer (got ${p})`);
    if (p >= mc.contextLength) throw new Error(`prefix tuning: numVirtualTokens (${p}) must be below contextLength (${mc.contextLength}): the prefix takes ${p} positions`);
    if (!Number.isInteger(c.encoderHiddenSize) || c.encoderHiddenSize <= 0) throw new Error(`prefix tuning: encoderHiddenSize must be a positive integer (got ${c.encoderHiddenSize})`);
    if (!(c.initStd > 0)) throw new Error(`prefix tuning: initStd must be > 0 (got ${c.initStd})`);
    if (typeof c.prefixProjection !== 'boolean') throw new Error(`prefix tuning: prefixProjection must be true or false (got ${String(c.prefixProjection)})`);
    const init = c.initFrom;
    if (typeof init === 'object' && init !== null) {
      if (!Array.isArray(init.tokens)) throw new Error('prefix tuning: initFrom must be "random", "zero" or { tokens: number[] }');
      if (c.prefixProjection) throw new Error('prefix tuning: initFrom { tokens } needs prefixProjection false (a projection cannot be inverted to given keys/values)');
      if (init.tokens.length !== p) throw new Error(`prefix tuning: initFrom.tokens must hold numVirtualTokens = ${p} token ids (got ${init.tokens.length})`);
      for (const t of init.tokens) if (!Number.isInteger(t) || t < 0 || t >= mc.vocabSize) throw new Error(`prefix tuning: initFrom.tokens: ${t} is not a token id (vocab ${mc.vocabSize})`);
    } else if (init !== 'random' && init !== 'zero') {
      throw new Error(`prefix tuning: initFrom must be "random", "zero" or { tokens: number[] } (got ${JSON.stringify(init)})`);
    }

    const width = this.nLayers * 2 * this.tokenDim;
    let seed = c.seed;
    const add = (key: string, init: tf.Tensor) => {
      this.weights.set(key, tf.variable(init, true));
      init.dispose();
    };
    if (!c.prefixProjection) {
      add('prompt_embeddings', init === 'zero' ? tf.zeros([p, width])
        : init === 'random' ? tf.randomNormal([p, width], 0, c.initStd, 'float32', seed)
          : prefixFromTokens(model, init.tokens));
    } else {
      // torch.nn.Linear's default init: weight and bias U(−1/√in, 1/√in); Embedding N(0, 1).
      const uniform = (shape: number[], fanIn: number) => tf.randomUniform(shape, -1 / Math.sqrt(fanIn), 1 / Math.sqrt(fanIn), 'float32', seed++);
      const h = c.encoderHiddenSize;
      add('embedding.weight', tf.randomNormal([p, this.tokenDim], 0, 1, 'float32', seed++));
      add('transform.0.weight', uniform([h, this.tokenDim], this.tokenDim));
      add('transform.0.bias', uniform([h], this.tokenDim));
      add('transform.2.weight', init === 'zero' ? tf.zeros([width, h]) : uniform([width, h], h));
      add('transform.2.bias', init === 'zero' ? tf.zeros([width]) : uniform([width], h));
    }
  }

  /** Keys then values of one layer, (P, 2·token_dim), from the embedding or through the projection. */
  private layerRows(layer: number): tf.Tensor2D {
    const cols = 2 * this.tokenDim;
    if (!this.config.prefixProjection) return tf.slice(this.weights.get('prompt_embeddings')! as tf.Tensor2D, [0, layer * cols], [-1, cols]);
    const w = (k: string) => this.weights.get(k)!;
    const hidden = tf.tanh(tf.add(tf.matMul(w('embedding.weight') as tf.Tensor2D, w('transform.0.weight') as tf.Tensor2D, false, true), w('transform.0.bias')));
    // Only this layer's rows of the second Linear, so a forward pass projects each column once.
    const w2 = tf.slice(w('transform.2.weight'), [layer * cols, 0], [cols, -1]) as tf.Tensor2D;
    const b2 = tf.slice(w('transform.2.bias'), [layer * cols], [cols]);
    return tf.add(tf.matMul(hidden as tf.Tensor2D, w2, false, true), b2) as tf.Tensor2D;
  }

  /** Layer `layer`'s key/value prefixes (B, n_kv_heads, P, hd). */
  prefix(layer: number, batch: number): { k: tf.Tensor4D; v: tf.Tensor4D } {
    const rows = this.layerRows(layer);
    const p = this.config.numVirtualTokens;
    const part = (start: number) => {
      const m = tf.slice(rows, [0, start], [-1, this.tokenDim]);
      const heads = tf.expandDims(tf.transpose(tf.reshape(m, [p, this.nKvHeads, this.headDim]), [1, 0, 2]), 0) as tf.Tensor4D;
      return batch === 1 ? heads : tf.tile(heads, [batch, 1, 1, 1]);
    };
    return { k: part(0), v: part(this.tokenDim) };
  }

  /**
   * The tensor PEFT writes as `prompt_embeddings` (its `get_prompt_embedding_to_save`): the prefix
   * [P, n_layers·2·token_dim], through the projection when there is one, so a projected adapter exports
   * as a plain one (PEFT loads it that way in inference mode). The caller disposes it.
   */
  promptEmbeddingsToSave(): tf.Tensor2D {
    return tf.tidy(() => tf.concat(Array.from({ length: this.nLayers }, (_, i) => this.layerRows(i)), 1));
  }

  /**
   * What PEFT's `save_pretrained` writes to adapter_model.safetensors for prefix tuning: the single key
   * `prompt_embeddings` (projected when there is a projection); `saveAdapter` (peft/io) uses it.
   */
  async fileTensors(): Promise<Map<string, { shape: number[]; data: Float32Array }>> {
    const t = this.promptEmbeddingsToSave();
    try {
      return new Map([['prompt_embeddings', { shape: [...t.shape], data: (await t.data()) as Float32Array }]]);
    } finally {
      t.dispose();
    }
  }

  /** `adapter_config.json` of PEFT's PrefixTuningConfig. */
  peftConfig(): Record<string, unknown> {
    const c = this.config;
    return {
      peft_type: 'PREFIX_TUNING',
      task_type: 'CAUSAL_LM',
      num_virtual_tokens: c.numVirtualTokens,
      token_dim: this.tokenDim,
      num_layers: this.nLayers,
      num_attention_heads: this.nKvHeads,
      encoder_hidden_size: c.encoderHiddenSize,
      prefix_projection: c.prefixProjection,
      num_transformer_submodules: 1,
      init_weights: c.initFrom === 'zero' ? 'zero' : null,
      inference_mode: false,
    };
  }
}

/** Keys/values of `tokens` from a base-model run, in PEFT's [P, n_layers·2·token_dim] layout. */
function prefixFromTokens(model: CausalLM, tokens: readonly number[]): tf.Tensor2D {
  const cache = new KVCache(model.config.nLayers);
  try {
    peft(model).withDisabledSync(() => tf.tidy(() => { model.hidden(tf.tensor2d([[...tokens]], [1, tokens.length], 'int32'), { cache }); }));
    return tf.tidy(() => {
      const flat = (x: tf.Tensor4D) => tf.reshape(tf.transpose(x, [0, 2, 1, 3]), [tokens.length, -1]);
      return tf.concat(cache.layers.flatMap((l) => [flat(l!.k), flat(l!.v)]), 1) as tf.Tensor2D;
    });
  } finally {
    cache.dispose();
  }
}

/**
 * Adds a prefix-tuning adapter under `name` and makes it the active one (the base model is frozen).
 * Trainable size: P·n_layers·2·token_dim without projection; with it P·token_dim + (token_dim·H + H) +
 * (H·n_layers·2·token_dim + n_layers·2·token_dim), H = encoderHiddenSize.
 *
 * @example
 * const prefix = addPrefixTuning(model, { numVirtualTokens: 10 });
 * await new Trainer(model, causalLmObjective, data, { lr: 1e-2 }).train();
 * peft(model).disable();                                   // base model again
 * const saved = prefix.promptEmbeddingsToSave();           // PEFT's `prompt_embeddings`
 */
export function addPrefixTuning(model: CausalLM, config: Partial<PrefixTuningConfig> = {}, name = 'default'): PrefixTuning {
  const adapter = new PrefixTuning(model, config);
  return peft(model).add(name, adapter);
}

/**
 * `loadAdapter` for PEFT's PREFIX_TUNING folders: `prompt_embeddings` [P, n_layers·2·token_dim] becomes
 * a plain prefix (a `prefix_projection` adapter is saved projected, and PEFT loads it that way too).
 */
export function loadPrefixTuning(model: CausalLM, file: AdapterFile, name: string): PrefixTuning {
  const p = configNumber(file, 'num_virtual_tokens', undefined, 'integer');
  const adapter = new PrefixTuning(model, { numVirtualTokens: p, initFrom: 'zero' });
  try {
    const target = adapter.weights.get('prompt_embeddings')!;
    const entry = file.tensors.get('prompt_embeddings');
    if (!entry) throw new Error(`${file.weightsFile}: no tensor "prompt_embeddings"`);
    if (entry.shape.join() !== target.shape.join()) {
      throw new Error(`${file.weightsFile}: prompt_embeddings has shape [${entry.shape}], this model needs [${target.shape}] (num_virtual_tokens × num_layers·2·n_kv_heads·head_dim)`);
    }
    const { data } = entry.read();
    if (!(data instanceof Float32Array)) throw new Error(`${file.weightsFile}: prompt_embeddings must be a float tensor (got ${entry.dtype})`);
    tf.tidy(() => target.assign(tf.tensor(data, target.shape)));
    return peft(model).add(name, adapter);
  } catch (e) {
    tf.dispose([...adapter.weights.values()]);
    throw e;
  }
}

registerAdapterLoader('PREFIX_TUNING', loadPrefixTuning);
