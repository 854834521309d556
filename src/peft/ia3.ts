/**
 * IA3, "Infused Adapter by Inhibiting and Amplifying Inner Activations" (Liu et al., arXiv 2205.05638),
 * as PEFT's `tuners/ia3` implements it: a learned vector rescales the output of each target layer
 * (keys, values), and for feed-forward modules the input instead, which is the MLP's inner activation
 * (`down_proj`'s input). Vectors start at ones, so a fresh adapter is an exact no-op.
 */
import * as tf from '@tensorflow/tfjs';
import type { ModelConfig } from '../model/config';
import type { CausalLM } from '../model/transformer';
import type { HostTensor } from '../io/hf';
import { Adapter, peft, resolveTargets } from './peft';
import { withDefaults } from '../util/options';
import { gpt2QkvPaths, hfModuleMembers, hfModulePath, peftTargetModules } from './lora';
import { ADAPTER_CONFIG_FILE, AdapterFile, registerAdapterLoader } from './io';

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
  /** What the adapter remembers of its base model, for PEFT's module names. */
  private readonly base: { config: ModelConfig; linearPaths: readonly string[]; width(path: string): number };

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
    const widths = new Map(model.linearPaths().map((p) => [p, model.weightShape(`${p}.weight`)[1]]));
    this.base = { config: model.config, linearPaths: model.linearPaths(), width: (p) => widths.get(p)! };
    const weights = new Map<string, tf.Variable>();
    for (const path of paths) {
      const [inDim, outDim] = model.weightShape(`${path}.weight`);
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

  /**
   * PEFT's `IA3Config` fields. target_modules / feedforward_modules are written as HF module-name
   * suffixes that hit exactly the adapted layers (a regex or `all-linear` given here is resolved first,
   * since it was matched against tunelab's paths, not HF's module names).
   */
  peftConfig(): Record<string, unknown> {
    const hf = (p: string) => hfModulePath(this.base.config, p);
    const all = this.base.linearPaths.map(hf);
    return {
      peft_type: 'IA3', task_type: 'CAUSAL_LM', target_modules: peftTargetModules(all, this.paths.map(hf)),
      feedforward_modules: peftTargetModules(all, this.paths.filter((p) => this.feedforward.has(p)).map(hf)), init_ia3_weights: true,
      // PEFT sets it for GPT-2's Conv1D layers (weights [in, out]); it changes merging in torch, not the file's shapes.
      fan_in_fan_out: this.base.config.family === 'gpt2',
      // Exact paths: on GPT-2 a c_attn vector covers q, k and v even when only some were adapted.
      tunelab: { family: this.base.config.family, targets: [...this.paths] },
    };
  }

  /**
   * The adapter as PEFT saves it: `base_model.model.<HF module>.ia3_l` (PEFT's `ia3_l` is an
   * nn.ParameterDict, so the key has no `.weight`), shaped (out, 1) for output-scaled layers and
   * (1, in) for feed-forward layers. GPT-2's q/k/v outputs are HF's one fused `c_attn` (columns q | k | v):
   * their vectors are written as one `transformer.h.0.attn.c_attn.ia3_l` (3w, 1), with ones (no scaling)
   * for the ones not adapted, which is exact. Scaling q/k/v *inputs* has no such form (c_attn has one
   * input for all three), so that is refused on GPT-2.
   */
  async fileTensors(): Promise<Map<string, HostTensor>> {
    const out = new Map<string, HostTensor>();
    const cfg = this.base.config;
    for (const p of this.paths) {
      const key = `base_model.model.${hfModulePath(cfg, p)}.ia3_l`;
      if (out.has(key)) continue;
      const parts = hfModuleMembers(cfg, p);
      if (parts.length > 1) {
        const ff = parts.find((q) => this.feedforward.has(q));
        if (ff) throw new Error(`IA3 on GPT-2: ${ff} scales its input (feedforwardModules), but Hugging Face's GPT-2 computes q, k and v in one fused c_attn with one input, so PEFT has no file for it; scale its output instead`);
        const data = new Float32Array(parts.reduce((n, q) => n + this.base.width(q), 0)).fill(1);
        let offset = 0;
        for (const q of parts) {
          const v = this.vectors.get(q);
          if (v) data.set((await v.data()) as Float32Array, offset);
          offset += this.base.width(q);
        }
        out.set(key, { shape: [data.length, 1], data });
        continue;
      }
      const v = this.vectors.get(p)!;
      const n = v.shape[0]!;
      out.set(key, { shape: this.feedforward.has(p) ? [1, n] : [n, 1], data: (await v.data()) as Float32Array });
    }
    return out;
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
  const adapter = new Ia3Adapter(model, withDefaults(ia3Defaults, config, 'ia3'));
  return peft(model).add(name, adapter);
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

/** PEFT's IA3 defaults by model type (`TRANSFORMERS_MODELS_TO_IA3_*_MODULES_MAPPING`), for configs without them. */
const peftIa3Defaults: Record<ModelConfig['family'], { target: string[]; feedforward: string[] }> = {
  llama: { target: ['k_proj', 'v_proj', 'down_proj'], feedforward: ['down_proj'] },
  gpt2: { target: ['c_attn', 'mlp.c_proj'], feedforward: ['mlp.c_proj'] },
};

/**
 * PEFT's module matching: a list matches module-name suffixes at a dot (`k_proj` hits
 * `model.layers.0.self_attn.k_proj`), a string is a full-match regex. Throws naming the config file.
 */
function matchModules(file: AdapterFile, field: string, value: unknown, modules: readonly string[], family: string): string[] {
  if (typeof value === 'string') {
    let re: RegExp;
    try {
      re = new RegExp(`^(?:${value})$`);
    } catch (e) {
      throw new Error(`${file.configFile}: ${field} ${JSON.stringify(value)} is not a valid regex (${(e as Error).message})`);
    }
    return modules.filter((m) => re.test(m));
  }
  if (!Array.isArray(value) || !value.every((x) => typeof x === 'string')) throw new Error(`${file.configFile}: ${field} must be a string or a list of strings (got ${JSON.stringify(value)})`);
  const names = value as string[];
  const matches = (m: string, s: string) => m === s || m.endsWith(`.${s}`);
  for (const s of names) {
    if (!modules.some((m) => matches(m, s))) throw new Error(`${file.configFile}: ${field} entry "${s}" matches no ${field === 'target_modules' ? '' : 'targeted '}linear layer of this ${family} model`);
  }
  return modules.filter((m) => names.some((s) => matches(m, s)));
}

/**
 * `loadAdapter` for PEFT's IA3 folders: `base_model.model.<HF module>.ia3_l`, (out, 1) or (1, in) for
 * `feedforward_modules`. target_modules / feedforward_modules follow PEFT's matching (missing ones get
 * PEFT's defaults for the model type). GPT-2's fused `c_attn` (PEFT's gpt2 default) becomes the q/k/v
 * vectors it is made of, which is exact. Every tensor's name, shape and dtype is checked before the
 * model is touched; errors name the file and the tensor.
 */
export function loadIa3(model: CausalLM, file: AdapterFile, name: string): Ia3Adapter {
  const c = file.config;
  const cfg = model.config;
  for (const k of ['init_ia3_weights', 'fan_in_fan_out']) {
    if (c[k] !== undefined && c[k] !== null && typeof c[k] !== 'boolean') throw new Error(`${file.configFile}: "${k}" must be true or false (got ${JSON.stringify(c[k])})`);
  }
  const mts = c.modules_to_save;
  if (Array.isArray(mts) && mts.length > 0) throw new Error(`${file.configFile}: modules_to_save is not supported`);
  // HF module → the tunelab linear layers it covers (GPT-2's fused c_attn covers q/k/v). Older tunelab
  // GPT-2 files named them `transformer.h.0.attn.k_proj` (no such HF module): still read.
  const modules = new Map(model.linearPaths().map((p) => [hfModulePath(cfg, p), [p]]));
  if (cfg.family === 'gpt2') {
    for (let i = 0; i < cfg.nLayers; i++) {
      modules.set(`transformer.h.${i}.attn.c_attn`, gpt2QkvPaths(i));
      for (const p of gpt2QkvPaths(i)) modules.set(`transformer.h.${i}.attn.${p.split('.').pop()}`, [p]);
    }
  }
  const defaults = peftIa3Defaults[cfg.family];
  const hit = matchModules(file, 'target_modules', c.target_modules ?? defaults.target, [...modules.keys()], cfg.family);
  if (hit.length === 0) throw new Error(`${file.configFile}: target_modules ${JSON.stringify(c.target_modules)} matches no linear layer of this ${cfg.family} model`);
  const ffHit = new Set(matchModules(file, 'feedforward_modules', c.feedforward_modules ?? defaults.feedforward, hit, cfg.family));
  const targets = hit.flatMap((m) => modules.get(m)!);
  const twice = targets.find((p, i) => targets.indexOf(p) !== i);
  if (twice) throw new Error(`${file.configFile}: target_modules adapt ${twice} twice (c_attn and its q/k/v_proj); keep one`);
  const ffPaths = new Set(hit.filter((m) => ffHit.has(m)).flatMap((m) => modules.get(m)!));

  // Check every tensor before touching the model.
  const values = new Map<string, Float32Array>();
  for (const m of hit) {
    const paths = modules.get(m)!;
    const ff = ffHit.has(m);
    const dims = paths.map((p) => model.weightShape(`${p}.weight`) as [number, number]);
    const shape = ff ? [1, dims[0][0]] : [dims.reduce((s, d) => s + d[1], 0), 1];
    const key = `base_model.model.${m}.ia3_l`;
    const what = `ia3_l of ${paths.join(', ')}, ${ff ? 'a feed-forward module: (1, in_features)' : '(out_features, 1)'}`;
    const entry = file.tensors.get(key);
    if (!entry) throw new Error(`${file.weightsFile}: missing tensor "${key}" (${what}, as target_modules in ${ADAPTER_CONFIG_FILE} requires)`);
    if (entry.shape.join() !== shape.join()) {
      throw new Error(`${file.weightsFile}: tensor "${key}" has shape [${entry.shape}] but this model needs [${shape}] (${what}); was the adapter trained on another base model?`);
    }
    const t = entry.read();
    if (!(t.data instanceof Float32Array)) throw new Error(`${file.weightsFile}: tensor "${key}" has dtype ${t.dtype}; a float dtype is needed`);
    // A fused feed-forward c_attn scales the input all of q/k/v share; a fused output splits by rows.
    let offset = 0;
    paths.forEach((p, j) => {
      const n = ff ? dims[j][0] : dims[j][1];
      values.set(p, ff ? t.data as Float32Array : (t.data as Float32Array).slice(offset, offset + n));
      if (!ff) offset += n;
    });
  }
  const wanted = new Set(hit.map((m) => `base_model.model.${m}.ia3_l`));
  const unexpected = [...file.tensors.keys()].filter((k) => !wanted.has(k));
  if (unexpected.length) {
    throw new Error(`${file.weightsFile}: unexpected tensors ${unexpected.slice(0, 5).map((k) => `"${k}"`).join(', ')}${unexpected.length > 5 ? `, … (${unexpected.length})` : ''} for target_modules ${JSON.stringify(c.target_modules ?? defaults.target)}`);
  }

  // A c_attn vector tunelab wrote covers all of q/k/v; the ones it did not adapt (all ones there) stay off.
  const tl = c.tunelab as { targets?: unknown } | undefined;
  const saved = Array.isArray(tl?.targets) ? tl!.targets as unknown[] : undefined;
  const dropped = (p: string) => saved !== undefined && !saved.includes(p) && !ffPaths.has(p) && values.get(p)!.every((x) => x === 1);
  const ordered = model.linearPaths().filter((p) => targets.includes(p) && !dropped(p));
  const adapter = addIa3(model, { targetModules: ordered, feedforwardModules: ordered.filter((p) => ffPaths.has(p)) }, name);
  for (const p of ordered) {
    const v = adapter.weights.get(`${p}.ia3_l`)!;
    tf.tidy(() => v.assign(tf.tensor1d(values.get(p)!)));
  }
  return adapter;
}

registerAdapterLoader('IA3', loadIa3);
