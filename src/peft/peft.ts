/**
 * The one interface every PEFT method implements, and the per-model registry that attaches adapters
 * (Hugging Face PEFT's `PeftModel` / `add_adapter` / `set_adapter` / `disable_adapter`, in one place).
 *
 * An adapter owns its weights and says how it changes the forward pass through the model's hooks; the
 * registry freezes the base, files the weights under `model.adapterParams` (so every trainer, optimizer
 * and parameter count sees them), composes several adapters on one layer, and switches them on and off.
 */
import * as tf from '@tensorflow/tfjs';
import type { CausalLM, LinearContext } from '../model/transformer';

/** The PEFT methods, under PEFT's `peft_type` names where PEFT has the method. */
export type PeftType = 'LORA' | 'BOTTLENECK' | 'PREFIX_TUNING' | 'PROMPT_TUNING' | 'IA3' | 'LORA_MOE';

/** What `saveAdapter` knows when it asks an adapter for its config. */
export interface PeftConfigContext {
  /** The base model's hub id or folder (`base_model_name_or_path`), when known. */
  baseModelNameOrPath?: string | null;
}

/** A PEFT method's instance on one model. */
export interface Adapter {
  readonly peftType: PeftType;
  /** Trainable weights by key, e.g. `layers.0.attn.q_proj.lora_A` (prefixed by the registry, not here). */
  readonly weights: ReadonlyMap<string, tf.Variable>;
  /** Folded into the base weights (LoRA, IA3): outside the forward pass, so never trainable. */
  readonly merged?: boolean;
  /** Linear layer paths whose forward pass {@link Adapter.linear} wraps. */
  readonly targets: readonly string[];
  /**
   * Output of linear layer `path` on x (N, in) through this adapter; `inner` runs the layer beneath
   * (the base layer or adapters added earlier).
   */
  linear?(path: string, x: tf.Tensor2D, inner: (x: tf.Tensor2D) => tf.Tensor2D, ctx: LinearContext): tf.Tensor2D;
  /**
   * Prefix tuning: key/value prefixes (B, n_kv_heads, P, hd) of layer `layer` for batch size B, which
   * every query attends to (see `PrefixHook` in the model). Several active adapters' prefixes concatenate.
   */
  prefix?(layer: number, batch: number): { k: tf.Tensor4D; v: tf.Tensor4D };
  /**
   * Prompt tuning: virtual-token embeddings (B, P, d) put before the token embeddings (see
   * `VirtualTokensHook` in the model). Several active adapters' tokens concatenate.
   */
  virtualTokens?(batch: number): tf.Tensor3D;
  /** Positions the adapter takes before the real tokens (prefix and prompt tuning: `numVirtualTokens`). */
  readonly reservedPositions?: number;
  /**
   * `adapter_config.json` contents (PEFT field names where PEFT has the method). A `tunelab` key, if
   * any, is tunelab's own metadata: `saveAdapter` writes it to `tunelab_adapter.json` instead, since
   * PEFT warns about keys its config class lacks.
   */
  peftConfig(context?: PeftConfigContext): Record<string, unknown>;
  /** Frees tensors the adapter holds besides `weights` (the registry disposes the weights). */
  dispose?(): void;
}

/** Registry key of an adapter weight in `model.adapterParams`. */
export function adapterParamKey(name: string, key: string): string {
  return `adapters.${name}.${key}`;
}

/**
 * The adapters of one model. Get it with {@link peft}; methods add to it (`addLora(model, …)` etc.).
 *
 * @example
 * const p = peft(model);
 * addLora(model, { r: 8 }, 'faq');
 * addLora(model, { r: 8 }, 'defs');
 * p.use('defs');                           // train or generate with 'defs' only
 * await p.withDisabled(async () => …);     // the base model, e.g. DPO's reference
 */
export class AdapterRegistry {
  private readonly adapters = new Map<string, Adapter>();
  private active: string[] = [];
  private disabled = false;

  constructor(readonly model: CausalLM) {}

  /** Names of all adapters, in the order added. */
  get names(): string[] {
    return [...this.adapters.keys()];
  }

  /** Names of the adapters that run (empty while disabled). */
  get activeNames(): string[] {
    return this.disabled ? [] : [...this.active];
  }

  /** The adapter called `name`; throws naming the known ones when absent. */
  get(name: string): Adapter {
    const a = this.adapters.get(name);
    if (!a) throw new Error(`no adapter "${name}" (adapters: ${this.names.join(', ') || 'none'})`);
    return a;
  }

  has(name: string): boolean {
    return this.adapters.has(name);
  }

  /**
   * Attaches an adapter under `name` (taking ownership: a refused adapter is freed) and makes it the only active one. The base model is frozen
   * (PEFT's behaviour); unfreeze with `model.setTrainable(…, true)` for e.g. a trainable head.
   */
  add<A extends Adapter>(name: string, adapter: A): A {
    const problem = !/^[A-Za-z0-9_-]+$/.test(name) ? `adapter name "${name}" must be letters, digits, _ or - (it becomes a file and key name)`
      : this.adapters.has(name) ? `adapter "${name}" already exists; remove it first or pick another name`
        : adapter.targets.filter((t) => !this.model.linearPaths().includes(t)).map((t) => `adapter "${name}": model has no linear layer "${t}"`)[0];
    if (problem) {
      // The registry owns the adapter from here: a refused one is freed, so callers need no cleanup.
      tf.dispose([...adapter.weights.values()]);
      adapter.dispose?.();
      throw new Error(problem);
    }
    this.model.setTrainable(() => true, false);
    for (const [key, variable] of adapter.weights) {
      this.model.adapterParams.set(adapterParamKey(name, key), { variable, trainable: false });
    }
    this.adapters.set(name, adapter);
    this.use(name);
    return adapter;
  }

  /** Runs exactly these adapters (stacked in the order given) and makes only their weights trainable. */
  use(names: string | readonly string[]): void {
    const list = typeof names === 'string' ? [names] : [...names];
    for (const n of list) this.get(n);
    this.active = list;
    this.disabled = false;
    this.refresh();
  }

  /** Turns every adapter off (the base model runs) until {@link enable}. */
  disable(): void {
    this.disabled = true;
    this.refresh();
  }

  /** Turns the active adapters back on after {@link disable}. */
  enable(): void {
    this.disabled = false;
    this.refresh();
  }

  /** Runs `fn` with every adapter off, then restores the previous state (also on error). */
  async withDisabled<T>(fn: () => T | Promise<T>): Promise<T> {
    const was = this.disabled;
    this.disable();
    try {
      return await fn();
    } finally {
      this.disabled = was;
      this.refresh();
    }
  }

  /** Synchronous {@link withDisabled}, for use inside `tf.tidy` and trainer objectives. */
  withDisabledSync<T>(fn: () => T): T {
    const was = this.disabled;
    this.disable();
    try {
      return fn();
    } finally {
      this.disabled = was;
      this.refresh();
    }
  }

  /** Detaches and frees an adapter. */
  remove(name: string): void {
    const a = this.get(name);
    for (const key of a.weights.keys()) this.model.adapterParams.delete(adapterParamKey(name, key));
    tf.dispose([...a.weights.values()]);
    a.dispose?.();
    this.adapters.delete(name);
    this.active = this.active.filter((n) => n !== name);
    this.refresh();
  }

  /** Removes every adapter. */
  clear(): void {
    for (const n of this.names) this.remove(n);
  }

  /**
   * Re-installs the model's hooks and trainable flags from the active set. Methods call it after
   * changing what they wrap (e.g. LoRA after merging).
   */
  refresh(): void {
    const running = this.activeNames.map((n) => this.adapters.get(n)!);
    for (const [name, a] of this.adapters) {
      const on = running.includes(a) && !a.merged;
      for (const key of a.weights.keys()) this.model.adapterParams.get(adapterParamKey(name, key))!.trainable = on;
    }
    const hooks = this.model.hooks.linear;
    hooks.clear();
    const paths = new Set(running.flatMap((a) => (a.linear ? a.targets : [])));
    for (const path of paths) {
      const chain = running.filter((a) => a.linear && a.targets.includes(path));
      hooks.set(path, (x, base, p, ctx) => {
        let f = base;
        for (const a of chain) {
          const inner = f;
          f = (y) => a.linear!(p, y, inner, ctx);
        }
        return f(x);
      });
    }
    // Prompt learning: no hook at all when no active adapter has one, so the base path runs no extra op.
    const prefixers = running.filter((a) => a.prefix);
    if (prefixers.length === 0) delete this.model.hooks.prefix;
    else if (prefixers.length === 1) this.model.hooks.prefix = (layer, batch) => prefixers[0].prefix!(layer, batch);
    else {
      this.model.hooks.prefix = (layer, batch) => {
        const parts = prefixers.map((a) => a.prefix!(layer, batch));
        return { k: tf.concat(parts.map((p) => p.k), 2), v: tf.concat(parts.map((p) => p.v), 2) };
      };
    }
    this.model.hooks.reservedPositions = running.reduce((n, a) => n + (a.reservedPositions ?? 0), 0);
    const prompters = running.filter((a) => a.virtualTokens);
    if (prompters.length === 0) delete this.model.hooks.virtualTokens;
    else if (prompters.length === 1) this.model.hooks.virtualTokens = (batch) => prompters[0].virtualTokens!(batch);
    else this.model.hooks.virtualTokens = (batch) => tf.concat(prompters.map((a) => a.virtualTokens!(batch)), 1);
  }
}

const registries = new WeakMap<CausalLM, AdapterRegistry>();

/**
 * The adapter registry of `model` (created on first use).
 *
 * @example
 * peft(model).names;          // ['default']
 * peft(model).disable();      // base model outputs
 */
export function peft(model: CausalLM): AdapterRegistry {
  let r = registries.get(model);
  if (!r) registries.set(model, (r = new AdapterRegistry(model)));
  return r;
}

/** Trainable parameter count of an adapter, its share of the base model, and its tensors. */
export interface AdapterSize {
  trainable: number;
  /** Base model parameters (adapters excluded). */
  base: number;
  /** 100 · trainable / base. */
  percent: number;
}

/** Exact size of an adapter against the base model (PEFT's `print_trainable_parameters`). */
export function adapterSize(model: CausalLM, adapter: Adapter): AdapterSize {
  const trainable = [...adapter.weights.values()].reduce((s, v) => s + v.size, 0);
  const base = model.paramCount();
  return { trainable, base, percent: (100 * trainable) / base };
}

/**
 * Resolves PEFT's `target_modules` against a model: a list of names matched against the end of each
 * linear path (`q_proj` matches `layers.3.attn.q_proj`), a regex matched against the full path (PEFT's
 * string form), or `all-linear` (every linear layer except the output head, as PEFT does).
 * Throws naming the pattern when nothing matches.
 */
export function resolveTargets(model: CausalLM, targets: readonly string[] | string | RegExp, what = 'targetModules'): string[] {
  const paths = model.linearPaths();
  let hit: string[];
  if (targets === 'all-linear') hit = paths.filter((p) => p !== 'lm_head');
  else if (typeof targets === 'string' || targets instanceof RegExp) {
    const re = typeof targets === 'string' ? new RegExp(`^(?:${targets})$`) : targets;
    hit = paths.filter((p) => re.test(p));
  } else {
    const unknown = targets.filter((t) => !paths.some((p) => p === t || p.endsWith(`.${t}`)));
    if (unknown.length) throw new Error(`${what}: no linear layer matches ${unknown.map((u) => `"${u}"`).join(', ')} (layers end in: ${[...new Set(paths.map((p) => p.split('.').at(-1)))].join(', ')})`);
    hit = paths.filter((p) => targets.some((t) => p === t || p.endsWith(`.${t}`)));
  }
  if (hit.length === 0) throw new Error(`${what}: ${String(targets)} matches no linear layer of the model`);
  return hit;
}
