/**
 * Mixture of LoRA experts: the mixture-of-experts idea in its PEFT form (MoLoRA, Zadouri et al. arXiv
 * 2309.05444; LoRAMoE, Dou et al. arXiv 2312.09979; X-LoRA, Buehler & Buehler arXiv 2402.07148). Each
 * target linear layer gets n LoRA experts and a router:
 *
 *   g = softmax(x·W_g + b_g)                (optionally only the top k kept, renormalised)
 *   y = x·W + b + scale · Σ_e g_e · (dropout(x)·A_e·B_e)
 *
 * per row of x ('token' routing), or with one gate per sequence from the mean of its rows ('sequence').
 * Every B_e starts at zero, so a fresh mixture is an exact no-op, as a fresh LoRA is.
 *
 * The experts run as one LoRA of rank n·r: x·[A_1 … A_n] (N, n·r), each r-wide block scaled by its gate,
 * then · [B_1; …; B_n] (n·r, out). Two matmuls per layer whatever n is (no per-expert loop, no gather),
 * which is what keeps it fast on wasm; the cost is that of one LoRA of rank n·r plus a (N, n) router.
 * A sparse top-k mixture therefore saves no compute here (every expert still runs); top-k changes the
 * function (hard routing), not the speed.
 *
 * Saved folders are tunelab's own: `saveAdapter` uses PEFT's file names and LoRA's config names, but
 * `peft_type: "LORA_MOE"` is not a PEFT type, so `PeftModel.from_pretrained` cannot load them; tunelab's
 * `loadAdapter` does.
 */
import * as tf from '@tensorflow/tfjs';
import type { CausalLM, LinearContext } from '../model/transformer';
import { Rng } from '../util/rng';
import { withDefaults } from '../util/options';
import type { Penalty } from '../train/regularize';
import { Adapter, peft, resolveTargets } from './peft';
import { hashSeed, hfModulePath, loraDefaults, loraInitValues, loraScale, peftTargetModules } from './lora';
import { AdapterFile, configNumber, registerAdapterLoader } from './io';

/** How the router picks gates: per token (row of x), or once per sequence from the mean of its tokens. */
export type MoeRouting = 'token' | 'sequence';

/**
 * Initial router weight W_g: 'uniform' = torch nn.Linear's init (U(±1/√in), what MoLoRA's router gets),
 * so gates depend on the input from the first step; 'zeros' = uniform gates 1/n at the start; a number =
 * N(0, std²). The router bias always starts at zero.
 */
export type RouterInit = 'uniform' | 'zeros' | number;

/** Mixture-of-LoRA-experts hyper-parameters (file names in brackets). */
export interface LoraMoeConfig {
  /** Number of LoRA experts per target layer [`num_experts`]. */
  experts: number;
  /** Rank of each expert [`r`]. */
  r: number;
  /** Scale numerator, as LoRA: scale = alpha / r (alpha / √r with rsLoRA) [`lora_alpha`]. Gates sum to 1, so the mixture's update has one LoRA's scale. */
  alpha: number;
  /** Dropout on the experts' input while training (the router sees x undropped) [`lora_dropout`]. */
  dropout: number;
  /** Layers to adapt, as LoRA's `targetModules` (see `resolveTargets`) [`target_modules`]. */
  targetModules: readonly string[] | string | RegExp;
  /**
   * 'token': each token routes on its own input (MoLoRA, LoRAMoE). 'sequence': one gate per sequence from
   * the mean of its tokens' inputs, shared by all of them; needs `LinearContext.batch` from the model.
   * The mean covers the whole window (packed documents and later tokens included), so a token's gate
   * sees tokens after it: a small non-causal channel of n numbers per layer. With a KV cache each call
   * routes on its own chunk (prompt, then each new token), so cached generation differs from uncached;
   * generate with `useCache: false` under sequence routing [`routing`].
   */
  routing: MoeRouting;
  /**
   * null: soft mixture over all experts. k: keep the k largest gates per row and renormalise them to sum
   * 1 (Mixtral's rule; ties go to the lower expert index). With k = 1 the kept gate is always exactly 1,
   * so the router gets no gradient from the loss, only from the load-balancing penalty
   * ({@link loraMoeBalancePenalty}); prefer k ≥ 2 or soft routing unless you train with it [`top_k`].
   */
  topK: number | null;
  /** Initial router weight [`router_init`]. */
  routerInit: RouterInit;
  /** Rank-stabilised scaling α/√r [`use_rslora`]. */
  useRslora: boolean;
  /**
   * Coefficient of the Switch-Transformer load-balancing loss (Fedus et al. arXiv 2101.03961) that
   * {@link loraMoeBalancePenalty} adds. The trainer adds it only when that penalty is passed as
   * `TrainerOptions.penalty` (its one slot for extra loss terms) [`router_aux_loss_coef`].
   */
  routerAuxLossCoef: number;
  /** Seed of the initialisation [`tunelab.seed`]. */
  seed: number;
}

/** Defaults: 4 experts of LoRA's default rank, alpha and targets; soft token routing. */
export const loraMoeDefaults: Readonly<LoraMoeConfig> = Object.freeze({
  experts: 4, r: loraDefaults.r, alpha: loraDefaults.alpha, dropout: 0, targetModules: loraDefaults.targetModules,
  routing: 'token', topK: null, routerInit: 'uniform', useRslora: false, routerAuxLossCoef: 0.01, seed: 0,
});

function validate(c: LoraMoeConfig): void {
  const bad = (key: keyof LoraMoeConfig, rule: string) => new Error(`LoraMoeConfig.${key} ${rule} (got ${JSON.stringify(c[key])})`);
  if (!Number.isInteger(c.experts) || c.experts < 1) throw bad('experts', 'must be a positive integer');
  if (!Number.isInteger(c.r) || c.r < 1) throw bad('r', 'must be a positive integer');
  if (!Number.isFinite(c.alpha)) throw bad('alpha', 'must be a finite number');
  if (!(c.dropout >= 0 && c.dropout < 1)) throw bad('dropout', 'must be in [0, 1)');
  if (c.routing !== 'token' && c.routing !== 'sequence') throw bad('routing', 'must be "token" or "sequence"');
  if (c.topK !== null && !(Number.isInteger(c.topK) && c.topK >= 1 && c.topK <= c.experts)) throw bad('topK', `must be null or an integer in [1, experts = ${c.experts}]`);
  if (!(c.routerInit === 'uniform' || c.routerInit === 'zeros' || (typeof c.routerInit === 'number' && c.routerInit >= 0 && Number.isFinite(c.routerInit)))) {
    throw bad('routerInit', 'must be "uniform", "zeros" or a standard deviation ≥ 0');
  }
  if (!(c.routerAuxLossCoef >= 0 && Number.isFinite(c.routerAuxLossCoef))) throw bad('routerAuxLossCoef', 'must be a finite number ≥ 0');
}

/**
 * (N, n) 0/1 mask of the k largest entries per row. Top-k and comparisons have no gradient in tfjs, so
 * the mask is a custom op with a zero gradient (a stop-gradient): gradients reach the router through the
 * kept gate values, not through which ones were kept.
 */
function topKMask(g: tf.Tensor2D, k: number): tf.Tensor2D {
  const f = tf.customGrad((...args) => {
    const x = args[0] as tf.Tensor2D;
    const { indices } = tf.topk(x, k);
    return { value: tf.sum(tf.oneHot(indices as tf.Tensor2D, x.shape[1]), 1), gradFunc: () => tf.zerosLike(x) };
  });
  return f(g) as tf.Tensor2D;
}

/** One target layer's weights, in expert order. */
interface MoeLayer {
  a: tf.Variable[];
  b: tf.Variable[];
  wg: tf.Variable;
  bg: tf.Variable;
}

/** Router outputs of one forward through one layer, kept for the load-balancing penalty. */
interface BalancePart {
  /** Softmax probabilities before top-k (rows, n). */
  probs: tf.Tensor2D;
  /** Experts each row is dispatched to (rows, n), 0/1; top-1 under soft routing, as Switch counts. */
  dispatch: tf.Tensor2D;
}

/** Reads `LinearContext.batch` (rows B of the forward), which older models do not pass yet. */
function batchOf(ctx: LinearContext): number | undefined {
  return (ctx as LinearContext & { batch?: number }).batch;
}

/**
 * A mixture of LoRA experts on one model. Weights per target layer `<path>`: `<path>.experts.<e>.lora_A`
 * [in, r], `<path>.experts.<e>.lora_B` [r, out] (e = 0 … n−1), `<path>.router.weight` [in, n] and
 * `<path>.router.bias` [n]. Create with {@link addLoraMoe} or `loadAdapter`.
 *
 * @example
 * const moe = addLoraMoe(model, { experts: 4, r: 4 });
 * moe.scale;                              // alpha / r
 * moe.targets;                            // ['layers.0.attn.q_proj', 'layers.0.attn.v_proj', …]
 */
export class LoraMoeAdapter implements Adapter {
  readonly peftType = 'LORA_MOE' as const;
  readonly weights = new Map<string, tf.Variable>();
  /** Multiplier of each expert's A·B (before its gate). */
  readonly scale: number;
  private readonly layers = new Map<string, MoeLayer>();
  /** Set by {@link routerStats}: mean gate per expert of each layer in the next forward. */
  private probe?: Map<string, tf.Tensor1D>;
  /** Load-balancing bookkeeping while a {@link loraMoeBalancePenalty} is attached. */
  private balance?: { seed?: number; parts: BalancePart[] };

  /** Takes ownership of `tensors` (keys as {@link LoraMoeAdapter.weights}). Prefer {@link addLoraMoe}. */
  constructor(
    readonly name: string,
    readonly config: Readonly<LoraMoeConfig>,
    /** Target linear paths, in forward order. */
    readonly targets: readonly string[],
    private readonly base: { config: CausalLM['config']; linearPaths: readonly string[] },
    tensors: Map<string, tf.Tensor>,
  ) {
    this.scale = loraScale(config);
    for (const [k, t] of tensors) {
      this.weights.set(k, tf.variable(t, true));
      t.dispose();
    }
    const w = (k: string) => {
      const v = this.weights.get(k);
      if (!v) throw new Error(`LoRA-MoE "${name}": missing weight "${k}"`);
      return v;
    };
    const experts = Array.from({ length: config.experts }, (_, e) => e);
    for (const p of targets) {
      this.layers.set(p, {
        a: experts.map((e) => w(`${p}.experts.${e}.lora_A`)), b: experts.map((e) => w(`${p}.experts.${e}.lora_B`)),
        wg: w(`${p}.router.weight`), bg: w(`${p}.router.bias`),
      });
    }
  }

  /**
   * Gates of layer `path` for x (N, in): (N, n) under token routing, (B, n) under sequence routing
   * (B = `ctx.batch`). Also returns the softmax before top-k, for the load-balancing loss.
   */
  gates(path: string, x: tf.Tensor2D, ctx: LinearContext): { gates: tf.Tensor2D; probs: tf.Tensor2D } {
    const layer = this.layer(path);
    const c = this.config;
    let src = x;
    if (c.routing === 'sequence') {
      const b = batchOf(ctx);
      if (b === undefined) {
        throw new Error(`LoRA-MoE "${this.name}": routing 'sequence' needs the forward's batch size in LinearContext.batch, which this model does not pass; use routing 'token'`);
      }
      const [n, d] = x.shape;
      if (!Number.isInteger(b) || b < 1 || n % b !== 0) throw new Error(`LoRA-MoE "${this.name}": ${n} rows do not split into LinearContext.batch = ${b} sequences`);
      src = tf.mean(tf.reshape(x, [b, n / b, d]), 1) as tf.Tensor2D;
    }
    const probs = tf.softmax(tf.add(tf.matMul(src, layer.wg as tf.Tensor2D), layer.bg)) as tf.Tensor2D;
    if (c.topK === null || c.topK === c.experts) return { gates: probs, probs };
    const kept = tf.mul(probs, topKMask(probs, c.topK));
    return { gates: tf.div(kept, tf.sum(kept, 1, true)) as tf.Tensor2D, probs };
  }

  linear(path: string, x: tf.Tensor2D, inner: (x: tf.Tensor2D) => tf.Tensor2D, ctx: LinearContext): tf.Tensor2D {
    const y = inner(x);
    const layer = this.layer(path);
    const { experts: n, r } = this.config;
    const { gates, probs } = this.gates(path, x, ctx);
    if (this.probe) this.probe.set(path, tf.keep(tf.mean(gates, 0) as tf.Tensor1D));
    if (this.balance && ctx.training) {
      // A new dropout seed means a new forward (the trainer passes one per micro-step): drop the old parts.
      if (this.balance.seed !== ctx.seed) this.balance = { seed: ctx.seed, parts: [] };
      this.balance.parts.push({ probs, dispatch: topKMask(probs, this.config.topK ?? 1) });
    }
    // As LoRA's dropout: only with a seed, derived per adapter and layer.
    const rate = ctx.training && ctx.seed !== undefined ? this.config.dropout : 0;
    const xd = rate > 0 ? tf.dropout(x, rate, undefined, hashSeed(`${ctx.seed}:${this.name}:${path}`)) as tf.Tensor2D : x;
    const rows = x.shape[0];
    const aCat = n === 1 ? layer.a[0] : tf.concat(layer.a, 1); // [in, n·r]
    const bCat = n === 1 ? layer.b[0] : tf.concat(layer.b, 0); // [n·r, out]
    const low = tf.matMul(xd, aCat as tf.Tensor2D); // (N, n·r): every expert's x·A_e in one product
    // Gate and scale applied on the narrow (N, n·r) side, cheaper than on (N, out).
    const g = tf.mul(gates, this.scale);
    const gated = this.config.routing === 'token'
      ? tf.mul(tf.reshape(low, [rows, n, r]), tf.expandDims(g, 2))
      : tf.mul(tf.reshape(low, [gates.shape[0], rows / gates.shape[0], n, r]), tf.reshape(g, [gates.shape[0], 1, n, 1]));
    return tf.add(y, tf.matMul(tf.reshape(gated, [rows, n * r]) as tf.Tensor2D, bCat as tf.Tensor2D)) as tf.Tensor2D;
  }

  private layer(path: string): MoeLayer {
    const l = this.layers.get(path);
    if (!l) throw new Error(`LoRA-MoE adapter "${this.name}" does not target "${path}"`);
    return l;
  }

  /** @internal Starts/stops recording the mean gates of the next forward ({@link routerStats}). */
  setProbe(probe: Map<string, tf.Tensor1D> | undefined): void {
    this.probe = probe;
  }

  /** @internal Starts/stops keeping router outputs of training forwards ({@link loraMoeBalancePenalty}). */
  collectBalance(on: boolean): void {
    this.balance = on ? { parts: [] } : undefined;
  }

  /**
   * @internal Switch load-balancing loss of the last training forward, n·Σ_e f_e·P_e averaged over
   * layers (1 when balanced; f = dispatch fraction, P = mean router probability). Clears the record.
   */
  takeBalanceLoss(): tf.Scalar {
    const parts = this.balance?.parts ?? [];
    if (this.balance) this.balance.parts = [];
    const live = parts.filter((p) => !p.probs.isDisposed && !p.dispatch.isDisposed);
    if (live.length < parts.length) {
      throw new Error(`LoRA-MoE "${this.name}": the router outputs of the forward were freed before the load-balancing penalty ran (does the objective run the forward inside tf.tidy?)`);
    }
    if (live.length === 0) return tf.scalar(0);
    const n = this.config.experts;
    const k = this.config.topK ?? 1;
    return tf.tidy(() => {
      const perLayer = live.map(({ probs, dispatch }) => tf.mul(tf.sum(tf.mul(tf.div(tf.mean(dispatch, 0), k), tf.mean(probs, 0))), n));
      return tf.div(tf.addN(perLayer), live.length) as tf.Scalar;
    });
  }

  peftConfig(): Record<string, unknown> {
    const c = this.config;
    const hf = (p: string) => hfModulePath(this.base.config, p);
    return {
      peft_type: 'LORA_MOE', task_type: 'CAUSAL_LM', r: c.r, lora_alpha: c.alpha, lora_dropout: c.dropout,
      num_experts: c.experts, top_k: c.topK, routing: c.routing, router_init: c.routerInit,
      router_aux_loss_coef: c.routerAuxLossCoef, use_rslora: c.useRslora,
      target_modules: peftTargetModules(this.base.linearPaths.map(hf), this.targets.map(hf)),
      inference_mode: false, base_model_name_or_path: null,
      tunelab: { family: this.base.config.family, seed: c.seed, targets: [...this.targets] },
    };
  }
}

/**
 * Adds a mixture of LoRA experts under `name` and makes it the active adapter; the base model is frozen.
 * Trainable size per target layer [in → out]: (in·r + r·out)·n + in·n + n.
 *
 * @example
 * const moe = addLoraMoe(model, { experts: 4, r: 4, targetModules: ['q_proj', 'v_proj', 'down_proj'] });
 * await new Trainer(model, causalLmObjective, data, { lr: 2e-3 }, { penalty: loraMoeBalancePenalty(model) }).train();
 * routerStats(model, 'default', ids);   // which expert each layer uses for these inputs
 */
export function addLoraMoe(model: CausalLM, config: Partial<LoraMoeConfig> = {}, name = 'default'): LoraMoeAdapter {
  const c: LoraMoeConfig = withDefaults(loraMoeDefaults, config, 'loraMoe');
  validate(c);
  const targets = resolveTargets(model, c.targetModules);
  const n = c.experts;
  const tensors = new Map<string, tf.Tensor>();
  for (const p of targets) {
    const [inDim, outDim] = model.weightShape(`${p}.weight`);
    for (let e = 0; e < n; e++) {
      // One stream per expert, so adding experts does not change the existing experts' initial values.
      const { a, b } = loraInitValues(inDim, outDim, c.r, true, new Rng(hashSeed(`${c.seed}:${name}:${p}:expert${e}`)));
      tensors.set(`${p}.experts.${e}.lora_A`, tf.tensor2d(a, [inDim, c.r]));
      tensors.set(`${p}.experts.${e}.lora_B`, tf.tensor2d(b, [c.r, outDim]));
    }
    const rng = new Rng(hashSeed(`${c.seed}:${name}:${p}:router`));
    // W_g [in, n] is drawn as a LoRA A of rank n: nn.Linear's U(±1/√in), or N(0, 1/n²) rescaled to the std.
    const std = c.routerInit;
    const wg = std === 'zeros' ? new Float32Array(inDim * n)
      : std === 'uniform' ? loraInitValues(inDim, 1, n, true, rng).a
        : loraInitValues(inDim, 1, n, 'gaussian', rng).a.map((v) => v * n * std);
    tensors.set(`${p}.router.weight`, tf.tensor2d(wg, [inDim, n]));
    tensors.set(`${p}.router.bias`, tf.zeros([n]));
  }
  const adapter = new LoraMoeAdapter(name, c, targets, { config: model.config, linearPaths: model.linearPaths() }, tensors);
  return peft(model).add(name, adapter);
}

function moeAdapter(model: CausalLM, name: string): LoraMoeAdapter {
  const a = peft(model).get(name);
  if (!(a instanceof LoraMoeAdapter)) throw new Error(`adapter "${name}" is ${a.peftType}, not LORA_MOE`);
  return a;
}

/**
 * Mean gate per expert of each target layer for a batch (inference mode): which experts these inputs
 * use. Keys are target paths; values have one entry per expert and sum to 1. The adapter must be active.
 *
 * @example
 * const stats = routerStats(model, 'default', [[1, 2, 3, 4]]);
 * stats.get('layers.0.attn.q_proj');   // e.g. [0.71, 0.29]
 */
export function routerStats(model: CausalLM, name: string, inputIds: tf.Tensor2D | readonly (readonly number[])[]): Map<string, number[]> {
  const adapter = moeAdapter(model, name);
  if (!peft(model).activeNames.includes(name)) throw new Error(`routerStats: adapter "${name}" is not active (active: ${peft(model).activeNames.join(', ') || 'none'}); call peft(model).use("${name}") first`);
  const probe = new Map<string, tf.Tensor1D>();
  adapter.setProbe(probe);
  try {
    tf.tidy(() => {
      const ids = inputIds instanceof tf.Tensor ? inputIds : tf.tensor2d(inputIds.map((r) => [...r]), [inputIds.length, inputIds[0]?.length ?? 0], 'int32');
      model.forward(ids);
    });
    return new Map(adapter.targets.map((p) => [p, [...probe.get(p)!.dataSync()]]));
  } finally {
    adapter.setProbe(undefined);
    tf.dispose([...probe.values()]);
  }
}

/**
 * The load-balancing auxiliary loss of Switch Transformers (Fedus et al. arXiv 2101.03961, as Mixtral's
 * `router_aux_loss_coef`) as a trainer penalty: coef · n·Σ_e f_e·P_e, averaged over target layers, where
 * f_e is the share of rows dispatched to expert e (its top-k, top-1 under soft routing) and P_e the mean
 * router probability. It is 1·coef when routing is balanced and up to n·coef when one expert takes all,
 * so it keeps experts from dying. It reads the router outputs of the forward the trainer just ran, so
 * it needs an objective that runs the forward outside `tf.tidy` (causalLmObjective does).
 *
 * @example
 * addLoraMoe(model, { experts: 4, topK: 2, routerAuxLossCoef: 0.01 });
 * const penalty = loraMoeBalancePenalty(model);
 * await new Trainer(model, causalLmObjective, data, { lr: 2e-3 }, { penalty }).train();
 * penalty.dispose();
 */
export function loraMoeBalancePenalty(model: CausalLM, name = 'default', coef?: number): Penalty {
  const adapter = moeAdapter(model, name);
  const k = coef ?? adapter.config.routerAuxLossCoef;
  if (!(k >= 0 && Number.isFinite(k))) throw new Error(`loraMoeBalancePenalty: coef must be a finite number ≥ 0 (got ${coef})`);
  adapter.collectBalance(true);
  return {
    name: 'lora_moe_balance',
    term: () => {
      const loss = adapter.takeBalanceLoss();
      const out = tf.mul(loss, k) as tf.Scalar;
      loss.dispose();
      return out;
    },
    dispose: () => adapter.collectBalance(false),
  };
}

/** HF module path → tunelab linear path, for matching `target_modules` of a file. */
function fileTargets(model: CausalLM, file: AdapterFile): string[] {
  const tl = file.config.tunelab as { targets?: unknown } | undefined;
  const saved = tl?.targets;
  const paths = model.linearPaths();
  // tunelab's own paths when the file has them (exact); otherwise PEFT-style matching of HF module names.
  if (Array.isArray(saved) && saved.every((t) => typeof t === 'string')) {
    const unknown = saved.filter((t) => !paths.includes(t));
    if (unknown.length) throw new Error(`${file.configFile}: tunelab.targets ${unknown.map((u) => `"${u}"`).join(', ')} are not linear layers of this ${model.config.family} model; was the adapter trained on another base model?`);
    return paths.filter((p) => saved.includes(p));
  }
  const t = file.config.target_modules;
  const hf = paths.map((p) => [hfModulePath(model.config, p), p] as const);
  let hit: string[];
  if (typeof t === 'string') {
    const re = new RegExp(`^(?:${t})$`);
    hit = hf.filter(([m]) => re.test(m)).map(([, p]) => p);
  } else if (Array.isArray(t) && t.length > 0 && t.every((x) => typeof x === 'string')) {
    const matches = (m: string, s: string) => m === s || m.endsWith(`.${s}`);
    hit = hf.filter(([m]) => (t as string[]).some((s) => matches(m, s))).map(([, p]) => p);
  } else throw new Error(`${file.configFile}: target_modules must be a string or a non-empty list of strings`);
  if (hit.length === 0) throw new Error(`${file.configFile}: target_modules ${JSON.stringify(t)} matches no linear layer of this ${model.config.family} model`);
  return hit;
}

/**
 * `loadAdapter` for LORA_MOE folders (written by `saveAdapter`): tensors `base_model.model.<weight key>`
 * in tunelab's layout. Every tensor is checked (name, shape, float) before the model is touched.
 */
export function loadLoraMoe(model: CausalLM, file: AdapterFile, name: string): LoraMoeAdapter {
  const c = file.config;
  const num = (key: string, fallback?: number) => configNumber(file, key, fallback);
  const r = num('r');
  const experts = num('num_experts');
  const routing = c.routing ?? 'token';
  if (routing !== 'token' && routing !== 'sequence') throw new Error(`${file.configFile}: routing ${JSON.stringify(routing)} is not supported`);
  const topK = c.top_k ?? null;
  if (topK !== null && typeof topK !== 'number') throw new Error(`${file.configFile}: "top_k" must be null or a number (got ${JSON.stringify(topK)})`);
  const ri = c.router_init;
  const routerInit: RouterInit = ri === 'zeros' || typeof ri === 'number' ? ri : 'uniform'; // only matters for fresh weights
  const tl = c.tunelab as { seed?: unknown } | undefined;
  const targets = fileTargets(model, file);
  const cfg: Partial<LoraMoeConfig> = {
    r, experts, alpha: num('lora_alpha', r), dropout: num('lora_dropout', 0), routing, topK, routerInit, useRslora: c.use_rslora === true,
    routerAuxLossCoef: num('router_aux_loss_coef', loraMoeDefaults.routerAuxLossCoef), targetModules: targets,
    seed: typeof tl?.seed === 'number' ? tl.seed : 0,
  };
  validate({ ...loraMoeDefaults, ...cfg });

  const needs = new Map<string, number[]>();
  for (const p of targets) {
    const [inDim, outDim] = model.weightShape(`${p}.weight`);
    for (let e = 0; e < experts; e++) {
      needs.set(`${p}.experts.${e}.lora_A`, [inDim, r]);
      needs.set(`${p}.experts.${e}.lora_B`, [r, outDim]);
    }
    needs.set(`${p}.router.weight`, [inDim, experts]);
    needs.set(`${p}.router.bias`, [experts]);
  }
  const values = new Map<string, Float32Array>();
  for (const [key, shape] of needs) {
    const fileKey = `base_model.model.${key}`;
    const entry = file.tensors.get(fileKey);
    if (!entry) throw new Error(`${file.weightsFile}: missing tensor "${fileKey}" (as num_experts = ${experts} and the targets in ${file.configFile} require)`);
    if (entry.shape.join() !== shape.join()) throw new Error(`${file.weightsFile}: tensor "${fileKey}" has shape [${entry.shape}] but this model needs [${shape}] (r = ${r}, num_experts = ${experts}); was the adapter trained on another base model?`);
    const t = entry.read();
    if (!(t.data instanceof Float32Array)) throw new Error(`${file.weightsFile}: tensor "${fileKey}" has dtype ${t.dtype}; a float dtype is needed`);
    values.set(key, t.data);
  }
  const unexpected = [...file.tensors.keys()].filter((k) => !needs.has(k.replace(/^base_model\.model\./, '')));
  if (unexpected.length) throw new Error(`${file.weightsFile}: unexpected tensors ${unexpected.slice(0, 5).map((k) => `"${k}"`).join(', ')}${unexpected.length > 5 ? `, … (${unexpected.length})` : ''}`);

  const adapter = addLoraMoe(model, cfg, name);
  for (const [key, data] of values) {
    const v = adapter.weights.get(key)!;
    tf.tidy(() => v.assign(tf.tensor(data, v.shape)));
  }
  return adapter;
}

registerAdapterLoader('LORA_MOE', loadLoraMoe);
