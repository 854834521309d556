/**
 * QLoRA-style frozen bases (Dettmers et al., arXiv 2305.14314): the base model's projection matrices are
 * stored int8 or NF4 (`./quant`) and decoded inside each matrix product (`./quant-ops`), while adapters
 * train on top in float32. Norms, biases and (by default) the embedding table stay float32, as
 * bitsandbytes leaves every module that is not an `nn.Linear` (and `lm_head`) unquantized.
 */
import * as tf from '@tensorflow/tfjs';
import type { CausalLM } from './transformer';
import { quantFormats, quantizeMatrix, type QuantFormat } from './quant';
import { decoded } from './quant-ops';
import { withDefaults } from '../util/options';

/** How {@link quantizeBase} stores a base model. */
export interface QuantizeConfig {
  /** `nf4` (4-bit NormalFloat, blocks of 64) or `int8` (per-output-channel absmax). */
  format: QuantFormat;
  /** NF4: quantize the block scales too (bitsandbytes' `bnb_4bit_use_double_quant`, default off there too). */
  doubleQuant: boolean;
  /**
   * Also store the token embedding table quantized (per row: each row is an output channel of the tied
   * head h·Eᵀ). Off by default as in QLoRA; on a small vocabulary model the table is a large share of the
   * weights (a quarter of tiny-llama's), so the saving needs it.
   */
  embeddings: boolean;
}

/** Defaults of {@link QuantizeConfig}: bitsandbytes' `BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type='nf4')`. */
export const quantizeDefaults: Readonly<QuantizeConfig> = Object.freeze({ format: 'nf4', doubleQuant: false, embeddings: false });

/** A {@link QuantizeConfig} from its defaults, checked: errors name the option (`where` names the caller). */
export function quantizeConfig(config: Partial<QuantizeConfig> = {}, where = 'quantizeBase'): QuantizeConfig {
  const c = withDefaults(quantizeDefaults, config, where);
  if (!quantFormats.includes(c.format)) throw new Error(`${where}: format must be ${quantFormats.map((f) => `"${f}"`).join(' or ')} (got ${JSON.stringify(c.format)})`);
  if (c.doubleQuant && c.format !== 'nf4') throw new Error(`${where}: doubleQuant applies to "nf4" only (int8 has one scale per output channel)`);
  for (const k of ['doubleQuant', 'embeddings'] as const) if (typeof c[k] !== 'boolean') throw new Error(`${where}: ${k} must be true or false (got ${JSON.stringify(c[k])})`);
  return c;
}

/**
 * Replaces the model's float32 projection weights (and optionally its embedding table) by quantized
 * copies and frees the float32 variables; the quantized weights are frozen. Returns the paths quantized.
 * Adapters added before or after train on top; `weight(path)` of a quantized path throws (use
 * `weightShape`, or {@link dequantizeBase} for merging and exports).
 *
 * @example
 * const { model } = await base('tiny-llama');
 * quantizeBase(model, { format: 'nf4' });
 * addLora(model, { r: 8 });   // QLoRA
 */
export function quantizeBase(model: CausalLM, config: Partial<QuantizeConfig> = {}): string[] {
  const c = quantizeConfig(config);
  const paths = model.linearPaths().map((p) => `${p}.weight`);
  if (c.embeddings) paths.push('embed_tokens.weight');
  const todo = paths.filter((p) => model.params.has(p));
  if (todo.length === 0) throw new Error(`quantizeBase: nothing to quantize (already ${[...new Set([...model.quantized.values()].map((q) => q.format))].join(', ') || 'quantized'})`);
  // Quantize everything first, then swap: an error (a NaN weight) leaves the model as it was.
  const done = todo.map((p) => {
    const v = model.params.get(p)!.variable;
    const [rows, cols] = v.shape;
    try {
      return quantizeMatrix(v.dataSync() as Float32Array, [rows, cols], { format: c.format, channelAxis: p === 'embed_tokens.weight' ? 0 : 1, doubleQuant: c.doubleQuant });
    } catch (e) {
      throw new Error(`quantizeBase: ${p}: ${(e as Error).message.replace(/^quantizeMatrix: /, '')}`);
    }
  });
  todo.forEach((p, i) => {
    model.params.get(p)!.variable.dispose();
    model.params.delete(p);
    model.quantized.set(p, done[i]);
  });
  return todo;
}

/**
 * Turns quantized weights back into frozen float32 variables holding their decoded values (what the
 * model computed with), e.g. before merging an adapter or exporting. Returns the paths restored.
 */
export function dequantizeBase(model: CausalLM): string[] {
  const paths = [...model.quantized.keys()];
  for (const p of paths) {
    const q = model.quantized.get(p)!;
    const t = decoded(q);
    model.params.set(p, { variable: tf.variable(t, true), trainable: false });
    t.dispose();
    model.quantized.delete(p);
  }
  return paths;
}

/** Bytes of base weights a model holds, float32 variables and quantized matrices (adapters excluded). */
export function weightBytes(model: CausalLM): { float32: number; quantized: number; total: number } {
  let float32 = 0;
  for (const p of model.params.values()) float32 += p.variable.size * 4;
  let quantized = 0;
  for (const q of model.quantized.values()) quantized += q.bytes;
  return { float32, quantized, total: float32 + quantized };
}
