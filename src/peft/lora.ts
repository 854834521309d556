/**
 * LoRA: low-rank adaptation (Hu et al., arXiv 2106.09685), with Hugging Face PEFT's semantics
 * (`tuners/lora`): y = x·W + b + scale · dropout(x)·A·B, scale = α/r (rsLoRA, Kalajdzievski arXiv
 * 2312.03732: α/√r). A starts Kaiming-uniform and B at zero, so a fresh adapter changes nothing.
 *
 * Layout: tunelab keeps linear weights [in, out], so A is stored [in, r] and B [r, out] (x·A·B needs no
 * transposes); files hold PEFT's lora_A [r, in] and lora_B [out, r] (see `./io`).
 *
 * Biases (PEFT's `bias`): PEFT trains the base model's own biases. Here the adapter owns zero-initialised
 * bias *deltas* instead ('lora_only': on the layers LoRA targets; 'all': on every linear layer with a
 * bias), so the base model stays bit-identical in every mode, disabling or switching adapters gives the
 * base biases back, and two adapters never fight over one bias. Saved files hold base + delta, which is
 * what PEFT saves. Limitation: 'all' does not reach LayerNorm biases (the model has no norm hook).
 */
import * as tf from '@tensorflow/tfjs';
import type { ModelConfig } from '../model/config';
import type { CausalLM, LinearContext } from '../model/transformer';
import { HostTensor, toHfTensors, transpose2d } from '../io/hf';
import { Rng } from '../util/rng';
import { withDefaults } from '../util/options';
import { quantile, svd } from '../util/linalg';
import { type MajoritySignMethod, dareLinear, dareTies, magnitudePrune, taskArithmetic, ties } from './merge-methods';
import { Adapter, AdapterRegistry, peft, resolveTargets } from './peft';
import { columnNorm, doraLinear, doraMerge, doraUnmerge, doraWeightNorm } from './dora';

/** PEFT's `bias`: which biases the adapter trains (as deltas here; see the file header). */
export type LoraBias = 'none' | 'all' | 'lora_only';

/** PEFT's `init_lora_weights`: true = Kaiming-uniform A, zero B; 'gaussian' = normal A (std 1/r), zero B; false = both random (not a no-op). */
export type LoraInit = boolean | 'gaussian';

/** LoRA hyper-parameters (PEFT `LoraConfig` names in brackets). */
export interface LoraConfig {
  /** Rank of the update [`r`]. */
  r: number;
  /** Scale numerator: scale = alpha / r, or alpha / √r with rsLoRA [`lora_alpha`]. */
  alpha: number;
  /** Dropout on the adapter's input while training [`lora_dropout`]. */
  dropout: number;
  /** Layers to adapt: names matched at the end of a path, a regex on the full path, or 'all-linear' (see `resolveTargets`) [`target_modules`]. */
  targetModules: readonly string[] | string | RegExp;
  /** Rank-stabilised scaling α/√r [`use_rslora`]. */
  useRslora: boolean;
  /** Which biases train [`bias`]. */
  bias: LoraBias;
  /** Initialisation [`init_lora_weights`]. */
  initLoraWeights: LoraInit;
  /** Seed of the initialisation (tunelab; PEFT uses torch's global RNG). */
  seed: number;
  /** DoRA (arXiv 2402.09353): a learned magnitude per output unit times the normalised direction W + s·A·B (see `./dora`) [`use_dora`]. */
  useDora: boolean;
}

/** PEFT's defaults (llama's default targets q_proj, v_proj). */
export const loraDefaults: Readonly<LoraConfig> = Object.freeze({
  r: 8, alpha: 8, dropout: 0, targetModules: Object.freeze(['q_proj', 'v_proj']), useRslora: false, bias: 'none', initLoraWeights: true, seed: 0, useDora: false,
});

/** 32-bit FNV-1a of a string, kept to 31 bits so it is a valid tfjs op seed (also used by `./moe`). */
export function hashSeed(text: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) h = Math.imul(h ^ text.charCodeAt(i), 0x01000193);
  return (h >>> 0) & 0x7fffffff;
}

function uniform(n: number, bound: number, rng: Rng): Float32Array {
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = (2 * rng.next() - 1) * bound;
  return out;
}

function normal(n: number, std: number, rng: Rng): Float32Array {
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    // Box–Muller; 1 − u keeps the log finite.
    const u = 1 - rng.next();
    out[i] = std * Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * rng.next());
  }
  return out;
}

/** Multiplier of a LoRA update A·B: α/r, or α/√r with rsLoRA (shared with `./moe`). */
export function loraScale(c: Pick<LoraConfig, 'alpha' | 'r' | 'useRslora'>): number {
  return c.useRslora ? c.alpha / Math.sqrt(c.r) : c.alpha / c.r;
}

/**
 * Fresh A [in, r] and B [r, out] values (row-major) as PEFT initialises them, drawn from `rng` (A first):
 * A as torch's nn.Linear init (Kaiming-uniform, a = √5: bound 1/√fan_in) or N(0, 1/r); B zero, or with
 * init false also nn.Linear's init (fan_in r). Shared with `./moe`, whose experts are LoRA pairs.
 */
export function loraInitValues(inDim: number, outDim: number, r: number, init: LoraInit, rng: Rng): { a: Float32Array; b: Float32Array } {
  const a = init === 'gaussian' ? normal(inDim * r, 1 / r, rng) : uniform(inDim * r, 1 / Math.sqrt(inDim), rng);
  const b = init === false ? uniform(r * outDim, 1 / Math.sqrt(r), rng) : new Float32Array(r * outDim);
  return { a, b };
}

/**
 * Hugging Face module path of a tunelab linear layer, e.g. `layers.0.attn.q_proj` →
 * `model.layers.0.self_attn.q_proj` (llama) or `layers.0.mlp.up_proj` → `transformer.h.0.mlp.c_fc` (gpt2).
 * GPT-2 fuses q/k/v into one Conv1D, `c_attn`, which tunelab splits: all three map to
 * `transformer.h.0.attn.c_attn` (see {@link gpt2QkvPaths}).
 */
export function hfModulePath(config: ModelConfig, path: string): string {
  if (config.family === 'gpt2') {
    const qkv = /^layers\.(\d+)\.attn\.[qkv]_proj$/.exec(path);
    if (qkv) return `transformer.h.${qkv[1]}.attn.c_attn`;
  }
  // One dummy tensor through the checkpoint mapping, so names are derived in one place (src/io/hf.ts).
  const [name] = toHfTensors(config, new Map([[`${path}.weight`, { shape: [1, 1], data: new Float32Array(1) }]])).keys();
  const module = name.slice(0, -'.weight'.length);
  return config.family === 'gpt2' ? `transformer.${module}` : module;
}

/** tunelab's q/k/v paths of GPT-2 block `i`, in the order of HF's fused `c_attn` output columns. */
export function gpt2QkvPaths(i: number | string): string[] {
  return ['q', 'k', 'v'].map((x) => `layers.${i}.attn.${x}_proj`);
}

/** The tunelab paths written as layer `path`'s HF module: GPT-2's q/k/v of its block (the fused `c_attn`), else `[path]`. */
export function hfModuleMembers(config: ModelConfig, path: string): string[] {
  const qkv = config.family === 'gpt2' ? /^layers\.(\d+)\.attn\.[qkv]_proj$/.exec(path) : null;
  return qkv ? gpt2QkvPaths(qkv[1]) : [path];
}

/** Escapes a module path for PEFT's regex keys (`rank_pattern`, `alpha_pattern`). */
const escapeRegex = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

/** PEFT's `target_modules` for exactly these HF module paths: shortest suffixes that hit nothing else (also used by `./moe`). */
export function peftTargetModules(all: readonly string[], targets: readonly string[]): string[] {
  const hit = new Set(targets);
  const matches = (p: string, s: string) => p === s || p.endsWith(`.${s}`);
  const out = new Set<string>();
  for (const t of targets) {
    const parts = t.split('.');
    for (let k = 1; k <= parts.length; k++) {
      const s = parts.slice(-k).join('.');
      if (all.every((p) => !matches(p, s) || hit.has(p))) { out.add(s); break; }
    }
  }
  return [...out];
}

function validateLoraConfig(c: LoraConfig): void {
  if (!Number.isInteger(c.r) || c.r <= 0) throw new Error(`LoraConfig.r must be a positive integer (got ${c.r})`);
  if (!Number.isFinite(c.alpha)) throw new Error(`LoraConfig.alpha must be a finite number (got ${c.alpha})`);
  if (!(c.dropout >= 0 && c.dropout < 1)) throw new Error(`LoraConfig.dropout must be in [0, 1) (got ${c.dropout})`);
  if (!['none', 'all', 'lora_only'].includes(c.bias)) throw new Error(`LoraConfig.bias must be "none", "all" or "lora_only" (got ${JSON.stringify(c.bias)})`);
  if (typeof c.useDora !== 'boolean') throw new Error(`LoraConfig.useDora must be true or false (got ${JSON.stringify(c.useDora)})`);
  if (c.initLoraWeights !== true && c.initLoraWeights !== false && c.initLoraWeights !== 'gaussian') {
    throw new Error(`LoraConfig.initLoraWeights must be true, false or "gaussian" (got ${JSON.stringify(c.initLoraWeights)})`);
  }
}

/** What an adapter remembers of its base model (for PEFT names). */
interface BaseInfo {
  config: ModelConfig;
  linearPaths: readonly string[];
  /** The model's parameter `key`, if any (DoRA reads the base weight and bias of its layers). */
  param(key: string): tf.Variable | undefined;
}

function baseInfo(model: CausalLM): BaseInfo {
  return { config: model.config, linearPaths: model.linearPaths(), param: (key) => model.params.get(key)?.variable };
}

/**
 * A LoRA adapter on one model. Weights: `<path>.lora_A` [in, r], `<path>.lora_B` [r, out], with DoRA
 * `<path>.lora_magnitude_vector` [out] and, with `bias` ≠ 'none', `<path>.bias_delta` [out]. Create
 * with {@link addLora} / {@link addDora} or `loadAdapter`.
 */
export class LoraAdapter implements Adapter {
  readonly peftType = 'LORA' as const;
  readonly weights = new Map<string, tf.Variable>();
  /** Multiplier of A·B: α/r, or α/√r with rsLoRA. */
  readonly scale: number;
  /** True while A·B is folded into the base weights ({@link mergeLora}); the forward hook is off then. */
  merged = false;
  /** DoRA: ‖W + s·A·B‖_c of each layer at merge time, which unmerging divides back out (PEFT caches it too). */
  private readonly mergedNorms = new Map<string, tf.Tensor1D>();

  /** Takes ownership of `tensors` (keys as {@link LoraAdapter.weights}). Prefer {@link addLora}. */
  constructor(
    readonly name: string,
    readonly config: Readonly<LoraConfig>,
    /** Linear paths with A and B. */
    readonly loraTargets: readonly string[],
    /** Linear paths with a bias delta. */
    readonly biasTargets: readonly string[],
    private readonly base: BaseInfo,
    tensors: Map<string, tf.Tensor>,
  ) {
    this.scale = loraScale(config);
    for (const [k, t] of tensors) {
      this.weights.set(k, tf.variable(t, true));
      t.dispose();
    }
  }

  /** Paths the hook wraps; none while merged, so the registry installs no hook for this adapter. */
  get targets(): string[] {
    if (this.merged) return [];
    const wanted = new Set([...this.loraTargets, ...this.biasTargets]);
    return this.base.linearPaths.filter((p) => wanted.has(p));
  }

  linear(path: string, x: tf.Tensor2D, inner: (x: tf.Tensor2D) => tf.Tensor2D, ctx: LinearContext): tf.Tensor2D {
    let y = inner(x);
    const a = this.weights.get(`${path}.lora_A`);
    const b = this.weights.get(`${path}.lora_B`);
    if (a && b) {
      // As the model's own dropout: only with a seed (the trainer always passes one), derived per
      // adapter and layer so masks are reproducible and independent.
      const rate = ctx.training && ctx.seed !== undefined ? this.config.dropout : 0;
      const xd = rate > 0 ? tf.dropout(x, rate, undefined, hashSeed(`${ctx.seed}:${this.name}:${path}`)) as tf.Tensor2D : x;
      const m = this.weights.get(`${path}.lora_magnitude_vector`);
      if (m) {
        const w = this.base.param(`${path}.weight`) as tf.Tensor2D;
        y = doraLinear(x, xd, y, { w, bias: this.base.param(`${path}.bias`) as tf.Tensor1D | undefined, a: a as tf.Tensor2D, b: b as tf.Tensor2D, m: m as tf.Tensor1D, scale: this.scale });
      } else {
        const low = tf.mul(tf.matMul(xd, a as tf.Tensor2D), this.scale) as tf.Tensor2D; // (N, r): scaling here is cheaper than on (N, out)
        y = tf.add(y, tf.matMul(low, b as tf.Tensor2D)) as tf.Tensor2D;
      }
    }
    const bias = this.weights.get(`${path}.bias_delta`);
    return bias ? tf.add(y, bias) as tf.Tensor2D : y;
  }

  /** The low-rank update of layer `path`: scale·A·B, [in, out] (caller disposes); with DoRA the change of direction, not of the weight. */
  delta(path: string): tf.Tensor2D {
    const a = this.weights.get(`${path}.lora_A`);
    if (!a) throw new Error(`LoRA adapter "${this.name}" does not target "${path}"`);
    return tf.tidy(() => tf.mul(tf.matMul(a as tf.Tensor2D, this.weights.get(`${path}.lora_B`)! as tf.Tensor2D), this.scale) as tf.Tensor2D);
  }

  /**
   * PEFT's `LoraConfig` fields. On GPT-2, k of q/k/v LoRAs of one block are written as one LoRA on HF's
   * fused `c_attn` of rank k·r (see {@link LoraAdapter.fileTensors}); `rank_pattern` / `alpha_pattern`
   * give it rank k·r and an alpha that keeps the scale (α·k, or α·√k with rsLoRA).
   */
  peftConfig(): Record<string, unknown> {
    const c = this.config;
    const hf = (p: string) => hfModulePath(this.base.config, p);
    const modules = [...new Set(this.loraTargets.map(hf))];
    const k = new Map(modules.map((m) => [m, this.loraTargets.filter((p) => hf(p) === m).length]));
    const multi = modules.filter((m) => k.get(m)! > 1);
    // One pattern for every c_attn when they all hold the same number of LoRAs; else one per module.
    const uniform = multi.length > 0 && new Set(multi.map((m) => k.get(m))).size === 1 && modules.filter((m) => m.endsWith('.c_attn')).length === multi.length;
    const keys: [string, number][] = uniform ? [['c_attn', k.get(multi[0])!]] : multi.map((m) => [`^${escapeRegex(m)}`, k.get(m)!]);
    return {
      peft_type: 'LORA', task_type: 'CAUSAL_LM', r: c.r, lora_alpha: c.alpha, lora_dropout: c.dropout,
      target_modules: peftTargetModules([...new Set(this.base.linearPaths.map(hf))], modules),
      bias: c.bias, use_rslora: c.useRslora,
      // PEFT's rule for GPT-2's Conv1D layers (weights [in, out]); it changes merging in torch, not the file's shapes.
      fan_in_fan_out: this.base.config.family === 'gpt2',
      init_lora_weights: c.initLoraWeights, inference_mode: false, base_model_name_or_path: null,
      modules_to_save: null, layers_to_transform: null, layers_pattern: null,
      rank_pattern: Object.fromEntries(keys.map(([key, n]) => [key, n * c.r])),
      alpha_pattern: Object.fromEntries(keys.map(([key, n]) => [key, c.useRslora ? c.alpha * Math.sqrt(n) : c.alpha * n])),
      use_dora: c.useDora,
      tunelab: { family: this.base.config.family, seed: c.seed, targets: [...this.loraTargets], biasTargets: [...this.biasTargets] },
    };
  }

  /**
   * The adapter as PEFT saves it: `base_model.model.<HF module>.lora_A.weight` [r, in], `.lora_B.weight`
   * [out, r] and, with biases, `base_model.model.<HF module>.bias` (base + delta, the trained bias).
   *
   * GPT-2 has one fused Conv1D `c_attn` (output columns q | k | v) where tunelab has q/k/v_proj. The k
   * LoRAs (A_x [d, r], B_x [r, w]) of one block are written as one exact LoRA on it: lora_A = [A_x1ᵀ; …]
   * [k·r, d] and lora_B [3w, k·r] block-diagonal, B_xᵀ in x's rows and j-th column block, zeros
   * elsewhere; then x·Aᵀ·Bᵀ puts x·A_x·B_x in x's columns and nothing in untargeted ones. The scale is
   * kept through `alpha_pattern`. A fused bias writes `c_attn.bias` whole (untrained parts as the base).
   * DoRA adds `.lora_magnitude_vector` [out] (see {@link LoraAdapter.magnitudeFileTensors}).
   */
  async fileTensors(model: CausalLM): Promise<Map<string, HostTensor>> {
    const out = new Map<string, HostTensor>();
    await this.loraFileTensors(model, out);
    if (this.config.useDora) await this.magnitudeFileTensors(model, out);
    return out;
  }

  /**
   * DoRA's magnitudes as PEFT saves them: `base_model.model.<HF module>.lora_magnitude_vector` [out]
   * (PEFT strips the `.weight` of its `DoraLinearLayer`). On GPT-2's c_attn the norm is per output column
   * of the fused [d, 3d] weight, i.e. the q | k | v columns in turn, so the magnitude is m_q | m_k | m_v;
   * with the block-diagonal lora_B each block's norm sees only its own update, which makes it exact. An
   * untargeted block gets ‖W_x‖_c, where g = 1: its columns stay as the base.
   */
  private async magnitudeFileTensors(model: CausalLM, out: Map<string, HostTensor>): Promise<void> {
    const cfg = this.base.config;
    const done = new Set<string>();
    for (const p of this.loraTargets) {
      if (done.has(p)) continue;
      const paths = hfModuleMembers(cfg, p);
      const m = tf.tidy(() => tf.concat(paths.map((q) => this.weights.get(`${q}.lora_magnitude_vector`) ?? columnNorm(model.weight(`${q}.weight`) as tf.Tensor2D))));
      out.set(`base_model.model.${hfModulePath(cfg, p)}.lora_magnitude_vector`, { shape: [...m.shape], data: (await m.data()) as Float32Array });
      m.dispose();
      for (const q of paths) done.add(q);
    }
  }

  private async loraFileTensors(model: CausalLM, out: Map<string, HostTensor>): Promise<void> {
    const host = async (t: tf.Tensor): Promise<HostTensor> => ({ shape: [...t.shape], data: (await t.data()) as Float32Array });
    const cfg = this.base.config;
    const done = new Set<string>();
    for (const p of this.loraTargets) {
      if (done.has(p)) continue;
      const key = `base_model.model.${hfModulePath(cfg, p)}`;
      const all = hfModuleMembers(cfg, p);
      if (all.length === 1) {
        out.set(`${key}.lora_A.weight`, transpose2d(await host(this.weights.get(`${p}.lora_A`)!)));
        out.set(`${key}.lora_B.weight`, transpose2d(await host(this.weights.get(`${p}.lora_B`)!)));
        continue;
      }
      const present = all.filter((q) => this.loraTargets.includes(q));
      const r = this.config.r;
      const [a, b] = tf.tidy(() => {
        const blocks = all.map((q) => {
          const j = present.indexOf(q);
          const width = model.weightShape(`${q}.weight`)[1];
          // Row block of x in Bᵀ: B_xᵀ [w, r] in column block j, zeros in the others.
          return tf.concat(present.map((_, jj) => (jj === j ? tf.transpose(this.weights.get(`${q}.lora_B`)!) : tf.zeros([width, r]))), 1);
        });
        return [tf.concat(present.map((q) => tf.transpose(this.weights.get(`${q}.lora_A`)!)), 0), tf.concat(blocks, 0)];
      });
      out.set(`${key}.lora_A.weight`, await host(a));
      out.set(`${key}.lora_B.weight`, await host(b));
      tf.dispose([a, b]);
      for (const q of present) done.add(q);
    }
    const doneBias = new Set<string>();
    for (const p of this.biasTargets) {
      if (doneBias.has(p)) continue;
      const paths = hfModuleMembers(cfg, p);
      const full = tf.tidy(() => tf.concat(paths.map((q) => {
        const d = this.weights.get(`${q}.bias_delta`);
        return d ? tf.add(model.weight(`${q}.bias`), d) : model.weight(`${q}.bias`);
      })));
      out.set(`base_model.model.${hfModulePath(cfg, p)}.bias`, await host(full));
      full.dispose();
      for (const q of paths) doneBias.add(q);
    }
  }

  /** DoRA: folds (sign 1) or unfolds (−1) layer `p` into the base weight W (see `./dora`). */
  foldDora(p: string, sign: 1 | -1): void {
    const w = this.base.param(`${p}.weight`)!;
    const layer = {
      w: w as tf.Tensor2D, a: this.weights.get(`${p}.lora_A`)! as tf.Tensor2D, b: this.weights.get(`${p}.lora_B`)! as tf.Tensor2D,
      m: this.weights.get(`${p}.lora_magnitude_vector`)! as tf.Tensor1D, scale: this.scale,
    };
    if (sign > 0) {
      const { weight, norm } = doraMerge(layer);
      w.assign(weight);
      weight.dispose();
      this.mergedNorms.get(p)?.dispose();
      this.mergedNorms.set(p, norm);
    } else {
      const norm = this.mergedNorms.get(p);
      if (!norm) throw new Error(`DoRA adapter "${this.name}": layer "${p}" was not merged`);
      const weight = doraUnmerge(layer, norm);
      w.assign(weight);
      tf.dispose([weight, norm]);
      this.mergedNorms.delete(p);
    }
  }

  dispose(): void {
    tf.dispose([...this.mergedNorms.values()]);
    this.mergedNorms.clear();
  }
}

/** Resolves a LoRA config against a model: LoRA paths and bias-delta paths. */
function loraPaths(model: CausalLM, c: LoraConfig): { lora: string[]; bias: string[] } {
  const lora = resolveTargets(model, c.targetModules);
  const withBias = (p: string) => model.params.has(`${p}.bias`);
  const bias = c.bias === 'none' ? [] : (c.bias === 'lora_only' ? lora : model.linearPaths()).filter(withBias);
  return { lora, bias };
}

function attach(model: CausalLM, adapter: LoraAdapter): LoraAdapter {
  return peft(model).add(adapter.name, adapter);
}

/**
 * Adds a LoRA adapter to `model` under `name` and makes it the active one; the base model is frozen.
 *
 * @example
 * const lora = addLora(model, { r: 8, alpha: 16, targetModules: ['q_proj', 'v_proj'] });
 * adapterSize(model, lora);   // { trainable: …, base: …, percent: … }
 * await new Trainer(model, causalLmObjective, data, { lr: 1e-3 }).train();
 */
export function addLora(model: CausalLM, config: Partial<LoraConfig> = {}, name = 'default'): LoraAdapter {
  const c: LoraConfig = withDefaults(loraDefaults, config, 'lora');
  validateLoraConfig(c);
  const { lora, bias } = loraPaths(model, c);
  const tensors = new Map<string, tf.Tensor>();
  for (const p of lora) {
    const [inDim, outDim] = model.weightShape(`${p}.weight`);
    const { a, b } = loraInitValues(inDim, outDim, c.r, c.initLoraWeights, new Rng(hashSeed(`${c.seed}:${name}:${p}`)));
    tensors.set(`${p}.lora_A`, tf.tensor2d(a, [inDim, c.r]));
    tensors.set(`${p}.lora_B`, tf.tensor2d(b, [c.r, outDim]));
    // PEFT's `DoraLinearLayer.update_layer`: m = ‖W + s·A·B‖_c, so the fresh adapter changes nothing.
    if (c.useDora) tensors.set(`${p}.lora_magnitude_vector`, doraWeightNorm(model.weight(`${p}.weight`) as tf.Tensor2D, tensors.get(`${p}.lora_A`) as tf.Tensor2D, tensors.get(`${p}.lora_B`) as tf.Tensor2D, loraScale(c)));
  }
  for (const p of bias) tensors.set(`${p}.bias_delta`, tf.zeros(model.weight(`${p}.bias`).shape));
  return attach(model, new LoraAdapter(name, c, lora, bias, baseInfo(model), tensors));
}

/**
 * Adds a DoRA adapter (LoRA with `useDora: true`; PEFT has no other form of it): trains a magnitude
 * per output unit and a LoRA direction. Merges, saves and loads as LoRA does.
 *
 * @example
 * addDora(model, { r: 8, alpha: 16, targetModules: ['q_proj', 'v_proj'] });
 */
export function addDora(model: CausalLM, config: Partial<Omit<LoraConfig, 'useDora'>> = {}, name = 'default'): LoraAdapter {
  return addLora(model, { ...config, useDora: true }, name);
}

function loraAdapter(reg: AdapterRegistry, name: string): LoraAdapter {
  const a = reg.get(name);
  if (!(a instanceof LoraAdapter)) throw new Error(`adapter "${name}" is ${a.peftType}, not LORA`);
  return a;
}

function loraNames(reg: AdapterRegistry, names: string | readonly string[] | undefined, fallback: string[]): string[] {
  const list = names === undefined ? fallback.filter((n) => reg.get(n) instanceof LoraAdapter) : typeof names === 'string' ? [names] : [...names];
  for (const n of list) loraAdapter(reg, n);
  return list;
}

/** Adds sign·(scale·A·B) to the base weights and sign·delta to the base biases. */
function fold(model: CausalLM, a: LoraAdapter, sign: 1 | -1): void {
  for (const p of a.loraTargets) {
    if (a.config.useDora) {
      a.foldDora(p, sign);
      continue;
    }
    const w = model.weight(`${p}.weight`);
    const next = tf.tidy(() => {
      const d = a.delta(p);
      return sign > 0 ? tf.add(w, d) : tf.sub(w, d);
    });
    w.assign(next);
    next.dispose();
  }
  for (const p of a.biasTargets) {
    const b = model.weight(`${p}.bias`);
    const next = tf.tidy(() => (sign > 0 ? tf.add(b, a.weights.get(`${p}.bias_delta`)!) : tf.sub(b, a.weights.get(`${p}.bias_delta`)!)));
    b.assign(next);
    next.dispose();
  }
}

/**
 * Folds adapters into the base weights (W += scale·A·B, with DoRA W ← m ⊙ (W + scale·A·B) / ‖·‖_c;
 * biases += delta) and stops their hooks: same
 * outputs, no adapter cost. Default: the active LoRA adapters. Undo with {@link unmergeLora}. A merged
 * adapter does not train until unmerged.
 *
 * @example
 * mergeLora(model);           // fast inference
 * unmergeLora(model);         // back to training
 */
export function mergeLora(model: CausalLM, names?: string | readonly string[]): void {
  const reg = peft(model);
  for (const n of loraNames(reg, names, reg.activeNames)) {
    const a = loraAdapter(reg, n);
    if (a.merged) continue;
    fold(model, a, 1);
    a.merged = true;
  }
  reg.refresh();
}

/**
 * Subtracts merged adapters back out of the base weights and restarts their hooks. Default: every
 * merged LoRA adapter. Float rounding leaves the base within ~1e-7 of its old values, not bit-identical.
 *
 * @example
 * mergeLora(model, 'faq'); unmergeLora(model, 'faq');
 */
export function unmergeLora(model: CausalLM, names?: string | readonly string[]): void {
  const reg = peft(model);
  for (const n of loraNames(reg, names, reg.names)) {
    const a = loraAdapter(reg, n);
    if (!a.merged) continue;
    fold(model, a, -1);
    a.merged = false;
  }
  reg.refresh();
}

/**
 * PEFT's `merge_and_unload`: merges the active LoRA adapters into the base weights and removes every
 * LoRA adapter (inactive unmerged ones are dropped), leaving a plain model for `saveModel`. Base
 * parameters stay frozen, as in PEFT; unfreeze with `model.setTrainable(() => true, true)`.
 *
 * @example
 * mergeAndUnload(model);
 * await saveModel('runs/merged', model, tokenizer);
 */
export function mergeAndUnload(model: CausalLM): CausalLM {
  const reg = peft(model);
  mergeLora(model);
  for (const n of reg.names) if (reg.get(n) instanceof LoraAdapter) reg.remove(n);
  return model;
}

/** PEFT's `add_weighted_adapter` `combination_type` values. */
export type CombinationType = 'cat' | 'linear' | 'svd' | 'ties' | 'ties_svd' | 'dare_linear' | 'dare_ties' | 'dare_linear_svd' | 'dare_ties_svd' | 'magnitude_prune' | 'magnitude_prune_svd';

const COMBINATIONS: readonly CombinationType[] = ['cat', 'linear', 'svd', 'ties', 'ties_svd', 'dare_linear', 'dare_ties', 'dare_linear_svd', 'dare_ties_svd', 'magnitude_prune', 'magnitude_prune_svd'];

/** Options of {@link addWeightedLora} (PEFT's `add_weighted_adapter` arguments in brackets). */
export interface WeightedLoraOptions {
  /** Rank of the `*svd` results [svd_rank]; default: the largest source rank. */
  svdRank?: number;
  /** Quantile in [0, 1] at which the `*svd` factors' entries are clamped (to ±that value) [svd_clamp]; default none. */
  svdClamp?: number;
  /** Fraction of entries kept by TIES' trim / DARE's drop, in [0, 1] [density]; needed by ties, dare and magnitude_prune types. */
  density?: number;
  /** TIES' sign election [majority_sign_method]. */
  majoritySignMethod: MajoritySignMethod;
  /** Seed of DARE's random drop (tunelab addition: PEFT uses torch's global generator). */
  seed: number;
}

/** Defaults of {@link WeightedLoraOptions} (PEFT's). */
export const weightedLoraDefaults: Readonly<WeightedLoraOptions> = Object.freeze({ majoritySignMethod: 'total' as MajoritySignMethod, seed: 0 });

/**
 * PEFT's `add_weighted_adapter`: a new LoRA adapter `newName` from existing ones, scale 1 (α = r).
 * - 'cat': ranks concatenated, A_i scaled by wᵢ·scaleᵢ: the update is exactly Σ wᵢ·ΔWᵢ (rank Σ rᵢ).
 * - 'linear': equal ranks; A = Σ sign(wᵢ)√|wᵢ|·scaleᵢ·A_i, B = Σ √|wᵢ|·B_i (PEFT's rule for positive
 *   weights). The update B·A has cross terms, so it is *not* Σ wᵢ·ΔWᵢ; it keeps the rank r.
 * - 'ties', 'dare_linear', 'dare_ties', 'magnitude_prune': equal ranks, weights ≥ 0; as PEFT, the rule
 *   of `./merge-methods` combines the A matrices and, separately, the B matrices with weights √(wᵢ·scaleᵢ).
 * - 'svd', 'ties_svd', 'dare_linear_svd', 'dare_ties_svd', 'magnitude_prune_svd': the rule (task arithmetic
 *   for 'svd') combines the full updates ΔWᵢ = scaleᵢ·Aᵢ·Bᵢ with weights wᵢ, and the result is
 *   re-factorised by SVD to rank `svdRank` (A = U_k, B = diag(σ_k)·V_kᵀ), entries optionally clamped at
 *   the `svdClamp` quantile. (PEFT multiplies by scaleᵢ twice here, wᵢ·scaleᵢ times a ΔWᵢ that already
 *   holds scaleᵢ; tunelab applies it once, so 'svd' at full rank equals 'cat'.)
 * An adapter that does not target a layer is left out of that layer's merge, as in PEFT. Bias deltas (all
 * adapters must share the bias mode) combine as Σ wᵢ·deltaᵢ. DARE's drops are seeded by `seed`, the new
 * name and the layer. Like {@link addLora}, the new adapter becomes the active one (PEFT leaves the active
 * adapter unchanged).
 *
 * @example
 * addWeightedLora(model, ['faq', 'defs'], [0.7, 0.3], 'mix', 'cat');
 * addWeightedLora(model, ['faq', 'defs'], [1, 1], 'tied', 'dare_ties_svd', { density: 0.5, svdRank: 8, seed: 1 });
 */
export function addWeightedLora(model: CausalLM, names: readonly string[], weights: readonly number[], newName: string, combination: CombinationType = 'cat', options: Partial<WeightedLoraOptions> = {}): LoraAdapter {
  const reg = peft(model);
  const o = withDefaults(weightedLoraDefaults, options, 'addWeightedLora', ['svdRank', 'svdClamp', 'density']);
  if (names.length === 0) throw new Error('addWeightedLora: give at least one adapter');
  if (weights.length !== names.length) throw new Error(`addWeightedLora: ${names.length} adapters but ${weights.length} weights`);
  if (!weights.every(Number.isFinite)) throw new Error(`addWeightedLora: weights must be finite numbers (got ${weights.join(', ')})`);
  if (!COMBINATIONS.includes(combination)) throw new Error(`addWeightedLora: combination must be one of ${COMBINATIONS.map((c) => `"${c}"`).join(', ')} (got ${JSON.stringify(combination)})`);
  const isSvd = combination.endsWith('svd');
  const rule = combination.replace(/_?svd$/, '') || 'linear'; // 'svd' alone is task arithmetic
  const needsDensity = rule !== 'linear' && rule !== 'cat';
  if (needsDensity && !(typeof o.density === 'number' && o.density >= 0 && o.density <= 1)) throw new Error(`addWeightedLora: '${combination}' needs options.density in [0, 1] (got ${o.density})`);
  if (!needsDensity && o.density !== undefined) throw new Error(`addWeightedLora: options.density does not apply to '${combination}'`);
  if (!isSvd && (o.svdRank !== undefined || o.svdClamp !== undefined)) throw new Error(`addWeightedLora: options.svdRank / svdClamp apply only to the *svd combinations, not '${combination}'`);
  if (o.svdRank !== undefined && !(Number.isInteger(o.svdRank) && o.svdRank > 0)) throw new Error(`addWeightedLora: options.svdRank must be a positive integer (got ${o.svdRank})`);
  if (o.svdClamp !== undefined && !(o.svdClamp >= 0 && o.svdClamp <= 1)) throw new Error(`addWeightedLora: options.svdClamp must be in [0, 1] (got ${o.svdClamp})`);
  if (o.majoritySignMethod !== 'total' && o.majoritySignMethod !== 'frequency') throw new Error(`addWeightedLora: options.majoritySignMethod must be "total" or "frequency" (got ${JSON.stringify(o.majoritySignMethod)})`);
  const src = names.map((n) => loraAdapter(reg, n));
  const factorRule = !isSvd && combination !== 'cat'; // merges A and B directly: ranks must match
  if (factorRule && src.some((a) => a.config.r !== src[0].config.r)) {
    throw new Error(`addWeightedLora: '${combination}' needs equal ranks (got ${src.map((a) => `${a.name}: ${a.config.r}`).join(', ')}); use 'cat' or '${combination === 'linear' ? 'svd' : `${combination}_svd`}'`);
  }
  if (factorRule && combination !== 'linear' && weights.some((w) => w < 0)) {
    throw new Error(`addWeightedLora: '${combination}' weighs A and B by √(wᵢ·scaleᵢ) as PEFT does, so weights must be ≥ 0 (got ${weights.join(', ')}); use '${combination}_svd'`);
  }
  const dora = src.filter((a) => a.config.useDora).map((a) => a.name);
  if (dora.length) throw new Error(`addWeightedLora: ${dora.join(', ')} ${dora.length > 1 ? 'are DoRA adapters' : 'is a DoRA adapter'}; a weighted sum of DoRA updates is not a DoRA update`);
  if (src.some((a) => a.config.bias !== src[0].config.bias)) throw new Error(`addWeightedLora: adapters differ in bias mode (${src.map((a) => `${a.name}: ${a.config.bias}`).join(', ')})`);
  const all = model.linearPaths();
  const union = (pick: (a: LoraAdapter) => readonly string[]) => all.filter((p) => src.some((a) => pick(a).includes(p)));
  const lora = union((a) => a.loraTargets);
  const bias = union((a) => a.biasTargets);
  const r = combination === 'cat' ? src.reduce((s, a) => s + a.config.r, 0) : isSvd ? o.svdRank ?? Math.max(...src.map((a) => a.config.r)) : src[0].config.r;
  const tensors = new Map<string, tf.Tensor>();
  const merge = (parts: Float64Array[], w: number[], seedKey: string): Float64Array => {
    const rng = new Rng(hashSeed(`${o.seed}:${newName}:${seedKey}`));
    if (rule === 'linear') return taskArithmetic(parts, w);
    if (rule === 'ties') return ties(parts, w, o.density!, o.majoritySignMethod);
    if (rule === 'dare_linear') return dareLinear(parts, w, o.density!, rng);
    if (rule === 'dare_ties') return dareTies(parts, w, o.density!, rng, o.majoritySignMethod);
    return magnitudePrune(parts, w, o.density!);
  };
  tf.tidy(() => {
    for (const p of lora) {
      const [inDim, outDim] = model.weightShape(`${p}.weight`);
      // An adapter that does not target p contributes zeros (its rank block stays empty under 'cat').
      const get = (a: LoraAdapter, k: 'lora_A' | 'lora_B') =>
        a.weights.get(`${p}.${k}`) ?? tf.zeros(k === 'lora_A' ? [inDim, a.config.r] : [a.config.r, outDim]);
      const has = src.map((s, i) => [s, i] as const).filter(([s]) => s.loraTargets.includes(p));
      let a: tf.Tensor;
      let b: tf.Tensor;
      if (combination === 'cat') {
        a = tf.concat(src.map((s, i) => tf.mul(get(s, 'lora_A'), weights[i] * s.scale)), 1); // [in, Σr]
        b = tf.concat(src.map((s) => get(s, 'lora_B')), 0); // [Σr, out]
      } else if (combination === 'linear') {
        a = tf.addN(src.map((s, i) => tf.mul(get(s, 'lora_A'), Math.sign(weights[i]) * Math.sqrt(Math.abs(weights[i])) * s.scale)));
        b = tf.addN(src.map((s, i) => tf.mul(get(s, 'lora_B'), Math.sqrt(Math.abs(weights[i])))));
      } else if (!isSvd) {
        const w = has.map(([s, i]) => Math.sqrt(weights[i] * s.scale));
        const host = (k: 'lora_A' | 'lora_B') => has.map(([s]) => Float64Array.from(s.weights.get(`${p}.${k}`)!.dataSync()));
        a = tf.tensor2d(Float32Array.from(merge(host('lora_A'), w, `${p}.lora_A`)), [inDim, r]);
        b = tf.tensor2d(Float32Array.from(merge(host('lora_B'), w, `${p}.lora_B`)), [r, outDim]);
      } else {
        if (r > Math.min(inDim, outDim)) throw new Error(`addWeightedLora: svdRank ${r} exceeds min(in, out) = ${Math.min(inDim, outDim)} of ${p}`);
        const deltas = has.map(([s]) => Float64Array.from(s.delta(p).dataSync()));
        [a, b] = svdFactors(merge(deltas, has.map(([, i]) => weights[i]), p), inDim, outDim, r, o.svdClamp);
      }
      tensors.set(`${p}.lora_A`, tf.keep(a));
      tensors.set(`${p}.lora_B`, tf.keep(b));
    }
    for (const p of bias) {
      const parts = src.flatMap((s, i) => {
        const d = s.weights.get(`${p}.bias_delta`);
        return d ? [tf.mul(d, weights[i])] : [];
      });
      tensors.set(`${p}.bias_delta`, tf.keep(tf.addN(parts)));
    }
  });
  const c: LoraConfig = { ...src[0].config, r, alpha: r, useRslora: false, targetModules: lora };
  return attach(model, new LoraAdapter(newName, c, lora, bias, baseInfo(model), tensors));
}

/**
 * A rank-k factorisation of the row-major [in, out] update ΔW (kohya's svd_merge_lora, as PEFT): ΔW ≈ U_k·diag(σ_k)·V_kᵀ
 * gives A = U_k [in, k] and B = diag(σ_k)·V_kᵀ [k, out] (PEFT's lora_A = Vh, lora_B = U·S in its [out, in]
 * layout). With `clamp`, entries of both are clipped to ±(the clamp-quantile of all their entries).
 */
function svdFactors(delta: Float64Array, inDim: number, outDim: number, k: number, clamp: number | undefined): [tf.Tensor2D, tf.Tensor2D] {
  const { u, s, v, p } = svd(delta, inDim, outDim);
  const a = new Float32Array(inDim * k);
  const b = new Float32Array(k * outDim);
  for (let i = 0; i < inDim; i++) for (let j = 0; j < k; j++) a[i * k + j] = u[i * p + j];
  for (let j = 0; j < k; j++) for (let o = 0; o < outDim; o++) b[j * outDim + o] = s[j] * v[o * p + j];
  if (clamp !== undefined) {
    const hi = quantile([...a, ...b], clamp);
    const clip = (x: number) => Math.min(Math.max(x, -hi), hi);
    a.forEach((x, i) => (a[i] = clip(x)));
    b.forEach((x, i) => (b[i] = clip(x)));
  }
  return [tf.tensor2d(a, [inDim, k]), tf.tensor2d(b, [k, outDim])];
}
