/**
 * Prompt tuning (Lester et al., arXiv 2104.08691) as Hugging Face PEFT's `PROMPT_TUNING`: P learned
 * virtual-token embeddings `prompt_embeddings` [P, d_model] go before every input's token embeddings;
 * the base model stays frozen.
 */
import * as tf from '@tensorflow/tfjs';
import type { CausalLM } from '../model/transformer';
import { Rng } from '../util/rng';
import { checkOptions } from '../util/options';
import { Adapter, peft, PeftConfigContext } from './peft';
import { AdapterFile, configNumber, registerAdapterLoader } from './io';

/** A tokenizer that {@link PromptTuningConfig.initFrom} text needs (the project's `Tokenizer` fits). */
export interface TextEncoder {
  encode(text: string): number[];
}

/** Options of {@link addPromptTuning}. */
export interface PromptTuningConfig {
  /**
   * P, virtual tokens (PEFT's `num_virtual_tokens`; default 20, PEFT's usual setting and within Lester
   * et al.'s 5–100). They take positions 0..P-1 and real tokens shift by P, so P + sequence length must
   * fit `contextLength` (20 of the shipped model's 128).
   */
  numVirtualTokens: number;
  /**
   * - `'random'` (default, PEFT's RANDOM): N(0, initStd).
   * - `'sampleVocab'` (PEFT's SAMPLE_VOCAB): embeddings of P token ids drawn uniformly.
   * - `{ text, tokenizer }` (PEFT's TEXT): embeddings of the text's tokens, cut to P or repeated until P
   *   as PEFT does. PEFT's tokenizer call adds the model's special tokens (e.g. Llama's BOS); `encode`
   *   here adds none, so pass `{ tokens }` with the BOS id first to reproduce that.
   * - `{ tokens }`: embeddings of these ids, cut or repeated the same way.
   */
  initFrom: 'random' | 'sampleVocab' | { text: string; tokenizer: TextEncoder } | { tokens: readonly number[] };
  /**
   * Std of `'random'`. Default: the model's `initStd`, the scale of its token embeddings (PEFT keeps
   * torch's Embedding init N(0, 1); pass 1 to match it).
   */
  initStd?: number;
  /**
   * `tokenizer_name_or_path` written to the config. PEFT's `PromptTuningConfig` refuses TEXT without
   * one; default: the base model's folder given to `saveAdapter` (tunelab saves the tokenizer there).
   */
  tokenizerNameOrPath?: string;
  /** Seed of the random initialisation. */
  seed: number;
}

/** Defaults of {@link PromptTuningConfig}. */
export const promptTuningDefaults: Readonly<Pick<PromptTuningConfig, 'numVirtualTokens' | 'initFrom' | 'seed'>> = Object.freeze({
  numVirtualTokens: 20, initFrom: 'random', seed: 0,
});

const KNOWN = ['numVirtualTokens', 'initFrom', 'initStd', 'tokenizerNameOrPath', 'seed'];

/** PEFT's TEXT rule: cut `ids` to n, or repeat them until there are n. */
export function fitInitTokens(ids: readonly number[], n: number): number[] {
  if (ids.length === 0) throw new Error('prompt tuning: initFrom gives no tokens (empty text or token list)');
  const reps = Math.ceil(n / ids.length);
  return Array.from({ length: reps }, () => ids).flat().slice(0, n);
}

/** A prompt-tuning adapter on one model (see {@link addPromptTuning}). */
export class PromptTuning implements Adapter {
  readonly peftType = 'PROMPT_TUNING' as const;
  /** The prefix / virtual tokens take `numVirtualTokens` positions before the real tokens. */
  get reservedPositions(): number {
    return this.config.numVirtualTokens;
  }
  readonly targets: readonly string[] = [];
  readonly weights = new Map<string, tf.Variable>();
  readonly config: Readonly<PromptTuningConfig> & { initStd: number };
  /** Token ids whose embeddings initialised the prompt (text / tokens / sampleVocab inits). */
  readonly initTokens?: readonly number[];
  private readonly model: CausalLM;

  constructor(model: CausalLM, config: Partial<PromptTuningConfig> = {}) {
    checkOptions(config, KNOWN, 'promptTuning');
    this.model = model;
    const mc = model.config;
    const c = { ...promptTuningDefaults, initStd: mc.initStd, ...config };
    this.config = c;
    const p = c.numVirtualTokens;
    if (!Number.isInteger(p) || p <= 0) throw new Error(`prompt tuning: numVirtualTokens must be a positive integer (got ${p})`);
    if (p >= mc.contextLength) throw new Error(`prompt tuning: numVirtualTokens (${p}) must be below contextLength (${mc.contextLength}): virtual tokens take ${p} positions`);
    if (!(c.initStd > 0)) throw new Error(`prompt tuning: initStd must be > 0 (got ${c.initStd})`);
    const init = c.initFrom;
    let ids: number[] | undefined;
    if (init === 'sampleVocab') {
      const rng = new Rng(c.seed);
      ids = Array.from({ length: p }, () => rng.int(mc.vocabSize));
    } else if (typeof init === 'object' && init !== null && 'text' in init) {
      if (typeof init.text !== 'string' || !init.text) throw new Error('prompt tuning: initFrom.text must be a non-empty string');
      if (typeof init.tokenizer?.encode !== 'function') throw new Error('prompt tuning: initFrom.tokenizer must have encode(text)');
      ids = fitInitTokens(init.tokenizer.encode(init.text), p);
    } else if (typeof init === 'object' && init !== null && 'tokens' in init && Array.isArray(init.tokens)) {
      ids = fitInitTokens(init.tokens, p);
    } else if (init !== 'random') {
      throw new Error(`prompt tuning: initFrom must be "random", "sampleVocab", { text, tokenizer } or { tokens } (got ${JSON.stringify(init)})`);
    }
    for (const t of ids ?? []) if (!Number.isInteger(t) || t < 0 || t >= mc.vocabSize) throw new Error(`prompt tuning: initFrom: ${t} is not a token id (vocab ${mc.vocabSize})`);
    this.initTokens = ids;
    // The raw embedding rows (as PEFT's word_embeddings(ids)), not through an embedding hook.
    const value = ids
      ? tf.tidy(() => tf.gather(model.weight('embed_tokens.weight'), tf.tensor1d(ids!, 'int32')))
      : tf.randomNormal([p, mc.dModel], 0, c.initStd, 'float32', c.seed);
    this.weights.set('prompt_embeddings', tf.variable(value, true));
    value.dispose();
  }

  /** Virtual-token embeddings (B, P, d). */
  virtualTokens(batch: number): tf.Tensor3D {
    const e = tf.expandDims(this.weights.get('prompt_embeddings')!, 0) as tf.Tensor3D;
    return batch === 1 ? e : tf.tile(e, [batch, 1, 1]);
  }

  /**
   * What PEFT's `save_pretrained` writes to adapter_model.safetensors for prompt tuning: the single key
   * `prompt_embeddings` [P, d]; `saveAdapter` (peft/io) uses it.
   */
  async fileTensors(): Promise<Map<string, { shape: number[]; data: Float32Array }>> {
    const v = this.weights.get('prompt_embeddings')!;
    return new Map([['prompt_embeddings', { shape: [...v.shape], data: (await v.data()) as Float32Array }]]);
  }

  /**
   * `adapter_config.json` of PEFT's PromptTuningConfig (`tuners/prompt_tuning/config.py`):
   * `prompt_tuning_init` is one of PEFT's TEXT, SAMPLE_VOCAB, RANDOM. TEXT needs `tokenizer_name_or_path`
   * (PEFT raises a ValueError without it): {@link PromptTuningConfig.tokenizerNameOrPath}, else the base
   * model's folder; with neither, RANDOM is written and the text kept in `prompt_tuning_init_text`
   * (the init only matters for fresh weights; a saved adapter loads its trained ones).
   */
  peftConfig(context: PeftConfigContext = {}): Record<string, unknown> {
    const c = this.config;
    const mc = this.model.config;
    const init = c.initFrom;
    const text = typeof init === 'object' && 'text' in init ? init.text : null;
    const tokenizer = c.tokenizerNameOrPath ?? context.baseModelNameOrPath ?? null;
    return {
      peft_type: 'PROMPT_TUNING',
      task_type: 'CAUSAL_LM',
      num_virtual_tokens: c.numVirtualTokens,
      token_dim: mc.dModel,
      num_transformer_submodules: 1,
      num_attention_heads: mc.nHeads,
      num_layers: mc.nLayers,
      // PEFT has no token-list init; a trained adapter loads the same whatever the init was.
      prompt_tuning_init: text !== null && tokenizer !== null ? 'TEXT' : init === 'sampleVocab' ? 'SAMPLE_VOCAB' : 'RANDOM',
      prompt_tuning_init_text: text,
      tokenizer_name_or_path: tokenizer,
      inference_mode: false,
    };
  }
}

/**
 * Adds a prompt-tuning adapter under `name` and makes it the active one (the base model is frozen).
 * Trainable size: P·d_model.
 *
 * @example
 * addPromptTuning(model, { numVirtualTokens: 8, initFrom: { text: 'Answer the shell question:', tokenizer: tok } });
 * await new Trainer(model, causalLmObjective, data, { lr: 3e-2 }).train();
 * generate(model, tok.encode('How do I list files?'));    // logits cover the real tokens only
 */
export function addPromptTuning(model: CausalLM, config: Partial<PromptTuningConfig> = {}, name = 'default'): PromptTuning {
  const adapter = new PromptTuning(model, config);
  return peft(model).add(name, adapter);
}

/**
 * `loadAdapter` for PEFT's PROMPT_TUNING folders: `prompt_embeddings` [P, d_model]. Any
 * `prompt_tuning_init` loads (the trained weights replace the init), including tunelab's older
 * RANDOM_DISCRETE.
 */
export function loadPromptTuning(model: CausalLM, file: AdapterFile, name: string): PromptTuning {
  const p = configNumber(file, 'num_virtual_tokens', undefined, 'integer');
  const tokenizerNameOrPath = file.config.tokenizer_name_or_path;
  const adapter = new PromptTuning(model, { numVirtualTokens: p, ...(typeof tokenizerNameOrPath === 'string' && { tokenizerNameOrPath }) });
  try {
    const target = adapter.weights.get('prompt_embeddings')!;
    const entry = file.tensors.get('prompt_embeddings');
    if (!entry) throw new Error(`${file.weightsFile}: no tensor "prompt_embeddings"`);
    if (entry.shape.join() !== target.shape.join()) throw new Error(`${file.weightsFile}: prompt_embeddings has shape [${entry.shape}], this model needs [${target.shape}] (num_virtual_tokens × d_model)`);
    const { data } = entry.read();
    if (!(data instanceof Float32Array)) throw new Error(`${file.weightsFile}: prompt_embeddings must be a float tensor (got ${entry.dtype})`);
    tf.tidy(() => target.assign(tf.tensor(data, target.shape)));
    return peft(model).add(name, adapter);
  } catch (e) {
    tf.dispose([...adapter.weights.values()]);
    throw e;
  }
}

registerAdapterLoader('PROMPT_TUNING', loadPromptTuning);
