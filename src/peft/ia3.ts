/**
 * IA3, "Infused Adapter by Inhibiting and Amplifying Inner Activations" (Liu et al., arXiv 2205.05638),
 * as PEFT's `tuners/ia3` implements it: a learned vector rescales the output of each target layer
 * (keys, values), and for feed-forward modules the input instead, which is the MLP's inner activation
 * (`down_proj`'s input). Vectors start at ones, so a fresh adapter is an exact no-op.
 */
import * as tf from '@tensorflow/tfjs';
import type { CausalLM } from '../model/transformer';
import { Adapter, peft, resolveTargets } from './peft';

/** Options of {@link addIa3} (PEFT's `IA3Config`). */
export interface Ia3Config {
  /**
   * Layers that get a vector: names matched against the end of each linear path, a regex string matched
   * against the full path, or `all-linear` (PEFT's `target_modules`). PEFT's llama default.
   */
  targetModules: readonly string[] | string;
  /**
   * Targets whose input (not output) is scaled; must be among `targetModules` (PEFT's
   * `feedforward_modules`). An empty list scales only outputs.
   */
  feedforwardModules: readonly string[] | string;
}

/**
 * PEFT's defaults for llama (`k_proj`, `v_proj`, `down_proj`; feed-forward `down_proj`), used for both
 * families: the paper's keys, values and FFN activation. (PEFT's gpt2 default scales the fused `c_attn`,
 * i.e. queries too; for that use `targetModules: ['q_proj', 'k_proj', 'v_proj', 'down_proj']`.)
 */
export const ia3Defaults: Readonly<Ia3Config> = Object.freeze({
  targetModules: Object.freeze(['k_proj', 'v_proj', 'down_proj']) as readonly string[],
  feedforwardModules: Object.freeze(['down_proj']) as readonly string[],
});

const configKeys = new Set<string>(['targetModules', 'feedforwardModules']);

/**
 * An IA3 adapter on one model: `<path>.ia3_l` of shape [out] for output-scaled layers and [in] for
 * feed-forward layers (PEFT stores them as (out, 1) and (1, in); the file writer reshapes).
 */
export class Ia3Adapter implements Adapter {
  readonly peftType = 'IA3' as const;
  readonly weights: ReadonlyMap<string, tf.Variable>;
  /** Every layer with a vector, also while merged. */
  readonly paths: readonly string[];
  /** Layers whose input is scaled. */
  readonly feedforward: ReadonlySet<string>;
  private readonly vectors = new Map<string, tf.Variable>();
  private mergedInto?: CausalLM;

  readonly config: Readonly<Ia3Config>;

  constructor(model: CausalLM, config: Readonly<Ia3Config>) {
    for (const k of Object.keys(config)) if (!configKeys.has(k)) throw new Error(`Ia3Config: unknown option "${k}" (options: ${[...configKeys].join(', ')})`);
    const paths = resolveTargets(model, config.targetModules, 'Ia3Config.targetModules');
    const ff = config.feedforwardModules;
    const ffPaths = Array.isArray(ff) && ff.length === 0 ? [] : resolveTargets(model, ff, 'Ia3Config.feedforwardModules');
    const stray = ffPaths.filter((p) => !paths.includes(p));
    // PEFT's rule too: a feed-forward module that is not a target would silently get no vector.
    if (stray.length) throw new Error(`Ia3Config.feedforwardModules must be a subset of targetModules (not targeted: ${stray.join(', ')})`);
    const copy = (t: readonly string[] | string) => (typeof t === 'string' ? t : Object.freeze([...t]));
    // A frozen copy: peftConfig() must describe the vectors as built, whatever the caller mutates later.
    this.config = Object.freeze({ targetModules: copy(config.targetModules), feedforwardModules: copy(ff) });
    this.paths = paths;
    this.feedforward = new Set(ffPaths);
    const weights = new Map<string, tf.Variable>();
    for (const path of paths) {
      const [inDim, outDim] = model.weight(`${path}.weight`).shape;
      const v = tf.tidy(() => tf.variable(tf.ones([this.feedforward.has(path) ? inDim : outDim]), true));
      this.vectors.set(path, v);
      weights.set(`${path}.ia3_l`, v);
    }
    this.weights = weights;
  }

  /** Wrapped layers: none while merged (the scaling is then inside the base weights). */
  get targets(): readonly string[] {
    return this.mergedInto ? [] : this.paths;
  }

  /** Whether the vectors are folded into the base weights. */
  get merged(): boolean {
    return this.mergedInto !== undefined;
  }

  linear(path: string, x: tf.Tensor2D, inner: (x: tf.Tensor2D) => tf.Tensor2D): tf.Tensor2D {
    const l = this.vectors.get(path)!;
    return this.feedforward.has(path) ? inner(tf.mul(x, l) as tf.Tensor2D) : tf.mul(inner(x), l) as tf.Tensor2D;
  }

  /**
   * Folds the vectors into the base weights (PEFT's merge): W [in, out] scales its columns (and the bias)
   * for output-scaled layers, its rows for feed-forward layers. Use {@link mergeIa3}.
   */
  merge(model: CausalLM): void {
    if (this.mergedInto) throw new Error('IA3 adapter is already merged; unmerge it first');
    this.scaleBase(model, false);
    this.mergedInto = model;
  }

  /** Divides the vectors back out (PEFT's unmerge, with its 1e-8 guard: exact only up to rounding). */
  unmerge(model: CausalLM): void {
    if (this.mergedInto !== model) throw new Error('IA3 adapter is not merged into this model');
    this.scaleBase(model, true);
    this.mergedInto = undefined;
  }

  private scaleBase(model: CausalLM, invert: boolean): void {
    for (const [path, l] of this.vectors) {
      const ff = this.feedforward.has(path);
      tf.tidy(() => {
        const s = invert ? tf.div(1, tf.add(l, 1e-8)) : l;
        const w = model.weight(`${path}.weight`);
        w.assign(tf.mul(w, ff ? tf.expandDims(s, 1) : s));
        // A feed-forward layer's bias is added after the scaled input, so it stays.
        const bias = model.params.get(`${path}.bias`)?.variable;
        if (bias && !ff) bias.assign(tf.mul(bias, s));
      });
    }
  }

  peftConfig(): Record<string, unknown> {
    const list = (t: readonly string[] | string) => (typeof t === 'string' ? t : [...t]);
    return {
      peft_type: 'IA3', task_type: 'CAUSAL_LM', target_modules: list(this.config.targetModules),
      feedforward_modules: list(this.config.feedforwardModules), init_ia3_weights: true, fan_in_fan_out: false,
    };
  }
}

/**
 * Adds an IA3 adapter to `model` under `name` and makes it the active adapter (the base is frozen).
 *
 * @example
 * const a = addIa3(model);                                  // k_proj, v_proj outputs; down_proj input
 * adapterSize(model, a).trainable;                          // nLayers · (2·kvDim + dFf)
 * addIa3(model, { targetModules: 'layers\\.[01]\\..*(k|v)_proj', feedforwardModules: [] }, 'early');
 */
export function addIa3(model: CausalLM, config: Partial<Ia3Config> = {}, name = 'default'): Ia3Adapter {
  const adapter = new Ia3Adapter(model, { ...ia3Defaults, ...config });
  try {
    peft(model).add(name, adapter);
  } catch (e) {
    tf.dispose([...adapter.weights.values()]);
    throw e;
  }
  return adapter;
}

function ia3Named(model: CausalLM, name: string): Ia3Adapter {
  const a = peft(model).get(name);
  if (!(a instanceof Ia3Adapter)) throw new Error(`adapter "${name}" is ${a.peftType}, not IA3`);
  return a;
}

/**
 * Folds IA3 adapter `name` into the base weights, so inference pays nothing for it (PEFT's
 * `merge_adapter`). While merged the adapter installs no hook and is not trained, and `disable()` still
 * shows the scaled model; {@link unmergeIa3} undoes it, and `peft(model).remove(name)` after merging
 * keeps the scaling for good (PEFT's `merge_and_unload`).
 *
 * @example
 * mergeIa3(model);            // same logits, plain base forward pass
 * unmergeIa3(model);          // back to base + adapter (base restored up to float rounding)
 */
export function mergeIa3(model: CausalLM, name = 'default'): void {
  const a = ia3Named(model, name);
  a.merge(model);
  peft(model).refresh(); // merged: no hook, not trainable
}

/** Undoes {@link mergeIa3}: divides the vectors out of the base weights and re-installs the hooks. */
export function unmergeIa3(model: CausalLM, name = 'default'): void {
  ia3Named(model, name).unmerge(model);
  peft(model).refresh();
}
