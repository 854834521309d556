/**
 * Bottleneck adapters (Houlsby et al., arXiv 1902.00751): a small residual MLP after the attention
 * output projection and after the MLP's down projection of every block,
 *
 *   y = base(x);   y + s · dropout(up(act(down(y))))      down: d → m, up: m → d,
 *
 * so the adapter adds 2·d·m + m + d weights per wrapped layer. Configuration names follow AdapterHub's
 * `adapters` library (`DoubleSeqBnConfig`, its Houlsby preset); PEFT has no bottleneck adapter.
 *
 * Saved folders are tunelab's own: `saveAdapter` uses PEFT's file names, but `peft_type: "BOTTLENECK"`
 * is not a PEFT type, so `PeftModel.from_pretrained` cannot load them; tunelab's `loadAdapter` does.
 *
 * Differences from AdapterHub worth knowing: the adapter wraps the projection's output before the
 * model's residual dropout (AdapterHub applies it after), and pre-norm models (both families here)
 * have no post-sublayer LayerNorm to place it around, so it sits directly on the residual branch.
 */
import * as tf from '@tensorflow/tfjs';
import type { CausalLM, LinearContext } from '../model/transformer';
import { gelu, linear, silu } from '../model/layers';
import { Adapter, peft } from './peft';
import { withDefaults } from '../util/options';
import { ADAPTER_CONFIG_FILE, AdapterFile, configNumber, registerAdapterLoader } from './io';

/** Nonlinearity between the down and up projection. */
export type BottleneckNonLinearity = 'relu' | 'gelu' | 'tanh' | 'silu';

/** Where the adapters go: Houlsby's two per block, or one of them (`mlp` alone is Pfeiffer's placement). */
export type BottleneckPlacement = 'both' | 'attention' | 'mlp';

/** Options of {@link addBottleneck}. */
export interface BottleneckConfig {
  /** Bottleneck width m = floor(d / reductionFactor) (AdapterHub's `reduction_factor`; Houlsby preset: 16). */
  reductionFactor: number;
  /** Explicit bottleneck width m; overrides `reductionFactor` when set. */
  bottleneckSize?: number;
  /**
   * Nonlinearity (AdapterHub's Houlsby preset uses swish = `silu`; its Pfeiffer preset `relu`). `gelu` is
   * the tanh approximation the model uses (HF `gelu_new`).
   */
  nonLinearity: BottleneckNonLinearity;
  /** `both` (Houlsby: after attention and after the MLP), `attention` (after `attn.o_proj`), `mlp` (after `mlp.down_proj`). */
  placement: BottleneckPlacement;
  /** Dropout on the adapter's output while training (AdapterHub's `dropout`). */
  dropout: number;
  /** Constant factor on the adapter's output (AdapterHub's `scaling`, He et al. arXiv 2110.04366). */
  scaling: number;
  /** Block indices that get no adapter (AdapterHub's `leave_out`). */
  leaveOut: readonly number[];
  /** Seed of the down projection's initialisation. */
  seed: number;
}

/**
 * Defaults: AdapterHub's Houlsby preset (reduction factor 16, swish, both placements, no dropout) with
 * its `mam_adapter` initialisation, the one that makes a fresh adapter an exact no-op.
 */
export const bottleneckDefaults: Readonly<BottleneckConfig> = Object.freeze({
  reductionFactor: 16, nonLinearity: 'silu', placement: 'both', dropout: 0, scaling: 1, leaveOut: Object.freeze([]) as readonly number[], seed: 0,
});

const nonLinearities: Record<BottleneckNonLinearity, { fn: (x: tf.Tensor) => tf.Tensor; hub: string }> = {
  relu: { fn: tf.relu, hub: 'relu' },
  gelu: { fn: gelu, hub: 'gelu_new' },
  tanh: { fn: tf.tanh, hub: 'tanh' },
  silu: { fn: silu, hub: 'swish' },
};

const configKeys = new Set<string>(['reductionFactor', 'bottleneckSize', 'nonLinearity', 'placement', 'dropout', 'scaling', 'leaveOut', 'seed']);

/** Throws an error naming the option when a {@link BottleneckConfig} is unusable. */
export function validateBottleneckConfig(c: BottleneckConfig, dModel?: number, nLayers?: number): void {
  for (const k of Object.keys(c)) if (!configKeys.has(k)) throw new Error(`BottleneckConfig: unknown option "${k}" (options: ${[...configKeys].join(', ')})`);
  const fail = (key: keyof BottleneckConfig, rule: string) => {
    throw new Error(`BottleneckConfig.${key} ${rule} (got ${JSON.stringify(c[key])})`);
  };
  if (!(c.reductionFactor > 0)) fail('reductionFactor', 'must be > 0');
  if (c.bottleneckSize !== undefined && !(Number.isInteger(c.bottleneckSize) && c.bottleneckSize > 0)) fail('bottleneckSize', 'must be a positive integer');
  if (!(c.nonLinearity in nonLinearities)) fail('nonLinearity', `must be one of ${Object.keys(nonLinearities).join(', ')}`);
  if (!['both', 'attention', 'mlp'].includes(c.placement)) fail('placement', 'must be both, attention or mlp');
  if (!(c.dropout >= 0 && c.dropout < 1)) fail('dropout', 'must be in [0, 1)');
  if (!Number.isFinite(c.scaling)) fail('scaling', 'must be a finite number');
  if (!Number.isInteger(c.seed) || c.seed < 0) fail('seed', 'must be a non-negative integer');
  if (!Array.isArray(c.leaveOut) || c.leaveOut.some((i) => !Number.isInteger(i) || i < 0 || (nLayers !== undefined && i >= nLayers))) {
    fail('leaveOut', `must list block indices in 0..${nLayers === undefined ? 'nLayers-1' : nLayers - 1}`);
  }
  if (dModel !== undefined && c.bottleneckSize === undefined && Math.floor(dModel / c.reductionFactor) < 1) {
    fail('reductionFactor', `leaves no bottleneck for dModel ${dModel} (need ≤ ${dModel}, or set bottleneckSize)`);
  }
}

/**
 * A 31-bit dropout seed per forward call, adapter and layer: the call's seed mixed (FNV-1a) with a key,
 * so masks differ across layers and stacked adapters yet repeat for the same call seed.
 */
function derivedSeed(seed: number, key: string): number {
  let h = (0x811c9dc5 ^ seed) >>> 0;
  for (let i = 0; i < key.length; i++) h = Math.imul(h ^ key.charCodeAt(i), 0x01000193) >>> 0;
  return h & 0x7fffffff;
}

interface Block {
  down: tf.Variable;
  downBias: tf.Variable;
  up: tf.Variable;
  upBias: tf.Variable;
}

/**
 * A bottleneck adapter on one model; weights `<path>.adapter_down.weight` [d, m], `.adapter_down.bias`
 * [m], `<path>.adapter_up.weight` [m, d], `.adapter_up.bias` [d], stored [in, out] like every linear
 * weight of the model (AdapterHub stores nn.Linear's [out, in] and names the down projection
 * `adapter_down.0`, being a Sequential with the nonlinearity).
 */
export class BottleneckAdapter implements Adapter {
  readonly peftType = 'BOTTLENECK' as const;
  readonly weights: ReadonlyMap<string, tf.Variable>;
  readonly targets: readonly string[];
  /** Bottleneck width m. */
  readonly size: number;
  private readonly dModel: number;
  private readonly blocks = new Map<string, Block>();

  readonly config: Readonly<BottleneckConfig>;

  constructor(model: CausalLM, config: Readonly<BottleneckConfig>, readonly name = 'default') {
    const { dModel, nLayers } = model.config;
    validateBottleneckConfig(config, dModel, nLayers);
    // A frozen copy: peftConfig() must describe the weights as built, whatever the caller mutates later.
    this.config = Object.freeze({ ...config, leaveOut: Object.freeze([...config.leaveOut]) });
    this.size = config.bottleneckSize ?? Math.floor(dModel / config.reductionFactor);
    this.dModel = dModel;
    const kinds = config.placement === 'both' ? ['attn.o_proj', 'mlp.down_proj'] : config.placement === 'attention' ? ['attn.o_proj'] : ['mlp.down_proj'];
    const targets: string[] = [];
    for (let i = 0; i < nLayers; i++) if (!config.leaveOut.includes(i)) for (const k of kinds) targets.push(`layers.${i}.${k}`);
    if (targets.length === 0) throw new Error(`BottleneckConfig.leaveOut leaves out every block (got ${JSON.stringify(config.leaveOut)})`);
    this.targets = targets;
    const weights = new Map<string, tf.Variable>();
    const m = this.size;
    targets.forEach((path, j) => {
      const d = model.weightShape(`${path}.weight`)[1];
      // AdapterHub's `mam_adapter` init (He et al.): down Kaiming-uniform with a = √5 (nn.Linear's
      // default, bound 1/√d), up and biases zero, so the adapter starts as an exact no-op yet its
      // up projection gets a useful gradient from the first step.
      const bound = 1 / Math.sqrt(d);
      // In a tidy: the initial tensors would otherwise stay allocated next to the variables.
      const block: Block = tf.tidy(() => ({
        down: tf.variable(tf.randomUniform([d, m], -bound, bound, 'float32', config.seed * 1009 + j), true),
        downBias: tf.variable(tf.zeros([m]), true),
        up: tf.variable(tf.zeros([m, d]), true),
        upBias: tf.variable(tf.zeros([d]), true),
      }));
      this.blocks.set(path, block);
      weights.set(`${path}.adapter_down.weight`, block.down);
      weights.set(`${path}.adapter_down.bias`, block.downBias);
      weights.set(`${path}.adapter_up.weight`, block.up);
      weights.set(`${path}.adapter_up.bias`, block.upBias);
    });
    this.weights = weights;
  }

  linear(path: string, x: tf.Tensor2D, inner: (x: tf.Tensor2D) => tf.Tensor2D, ctx: LinearContext): tf.Tensor2D {
    const y = inner(x);
    const b = this.blocks.get(path)!;
    const c = this.config;
    const h = nonLinearities[c.nonLinearity].fn(linear(y, b.down, b.downBias)) as tf.Tensor2D;
    let out: tf.Tensor = linear(h, b.up, b.upBias);
    if (c.scaling !== 1) out = tf.mul(out, c.scaling);
    if (ctx.training && c.dropout > 0 && ctx.seed !== undefined) out = tf.dropout(out, c.dropout, undefined, derivedSeed(ctx.seed, `${this.name}:${path}`));
    return tf.add(y, out) as tf.Tensor2D;
  }

  /** AdapterHub-style `adapter_config.json` (its field names), tagged with `peft_type: 'BOTTLENECK'`. */
  peftConfig(): Record<string, unknown> {
    const c = this.config;
    return {
      peft_type: 'BOTTLENECK', task_type: 'CAUSAL_LM', architecture: 'bottleneck',
      mh_adapter: c.placement !== 'mlp', output_adapter: c.placement !== 'attention',
      // AdapterHub only knows the factor; an explicit width is written as d/m plus `bottleneck_size`
      // (ours, authoritative on reload) because floor(d / (d/m)) can round to m − 1.
      reduction_factor: c.bottleneckSize === undefined ? c.reductionFactor : this.dModel / this.size,
      bottleneck_size: this.size, non_linearity: nonLinearities[c.nonLinearity].hub,
      original_ln_before: false, original_ln_after: true, residual_before_ln: true,
      init_weights: 'mam_adapter', is_parallel: false, scaling: c.scaling, dropout: c.dropout, leave_out: [...c.leaveOut],
    };
  }
}

/**
 * Adds Houlsby bottleneck adapters to `model` under `name` and makes them the active adapter (the base
 * is frozen). A fresh adapter leaves the logits exactly unchanged.
 *
 * @example
 * const a = addBottleneck(model, { reductionFactor: 8 });          // m = dModel / 8, swish, both placements
 * await new Trainer(model, causalLmObjective, data, { lr: 1e-3 }).train();
 * addBottleneck(model, { placement: 'mlp', nonLinearity: 'relu' }, 'pfeiffer');
 */
export function addBottleneck(model: CausalLM, config: Partial<BottleneckConfig> = {}, name = 'default'): BottleneckAdapter {
  const adapter = new BottleneckAdapter(model, withDefaults(bottleneckDefaults, config, 'bottleneck', ['bottleneckSize']), name);
  return peft(model).add(name, adapter);
}

/**
 * `loadAdapter` for BOTTLENECK folders (written by `saveAdapter`; PEFT has no bottleneck adapter, so the
 * file is tunelab's: `base_model.model.<weight key>`, e.g. `base_model.model.layers.0.attn.o_proj.adapter_down.weight`
 * [d, m], in the model's [in, out] layout). The config is {@link BottleneckAdapter.peftConfig}'s
 * AdapterHub fields (`bottleneck_size` wins over `reduction_factor`). Every tensor's name, shape and dtype
 * is checked before the model is touched; errors name the file and the tensor.
 */
export function loadBottleneck(model: CausalLM, file: AdapterFile, name: string): BottleneckAdapter {
  const c = file.config;
  const bad = (key: string, rule: string): never => {
    throw new Error(`${file.configFile}: "${key}" ${rule} (got ${JSON.stringify(c[key])})`);
  };
  const num = (key: string, fallback: number) => configNumber(file, key, fallback);
  if (c.architecture !== undefined && c.architecture !== 'bottleneck') bad('architecture', 'must be "bottleneck"');
  if (c.is_parallel === true) bad('is_parallel', 'is not supported (sequential adapters only)');
  const hub = c.non_linearity ?? nonLinearities[bottleneckDefaults.nonLinearity].hub;
  const nonLinearity = (Object.keys(nonLinearities) as BottleneckNonLinearity[]).find((k) => nonLinearities[k].hub === hub || k === hub);
  if (!nonLinearity) bad('non_linearity', `must be one of ${Object.values(nonLinearities).map((n) => n.hub).join(', ')}`);
  const mh = c.mh_adapter ?? true;
  const out = c.output_adapter ?? true;
  if (typeof mh !== 'boolean') bad('mh_adapter', 'must be true or false');
  if (typeof out !== 'boolean') bad('output_adapter', 'must be true or false');
  if (!mh && !out) throw new Error(`${file.configFile}: mh_adapter and output_adapter are both false: no adapter to load`);
  const leaveOut = c.leave_out ?? [];
  if (!Array.isArray(leaveOut) || !leaveOut.every((i) => Number.isInteger(i))) bad('leave_out', 'must be a list of block indices');
  const size = c.bottleneck_size;
  if (size !== undefined && size !== null && !(typeof size === 'number' && Number.isInteger(size) && size > 0)) bad('bottleneck_size', 'must be a positive integer');
  const config: BottleneckConfig = {
    ...bottleneckDefaults,
    reductionFactor: num('reduction_factor', bottleneckDefaults.reductionFactor),
    ...(typeof size === 'number' && { bottleneckSize: size }),
    nonLinearity: nonLinearity!,
    placement: mh && out ? 'both' : mh ? 'attention' : 'mlp',
    dropout: num('dropout', 0),
    scaling: num('scaling', 1),
    leaveOut: leaveOut as number[],
  };
  try {
    validateBottleneckConfig(config, model.config.dModel, model.config.nLayers);
  } catch (e) {
    throw new Error(`${file.configFile}: ${(e as Error).message}`);
  }
  const adapter = new BottleneckAdapter(model, config, name);
  try {
    const m = adapter.size;
    for (const [key, v] of adapter.weights) {
      const fileKey = `base_model.model.${key}`;
      const entry = file.tensors.get(fileKey);
      if (!entry) throw new Error(`${file.weightsFile}: missing tensor "${fileKey}" (as the placement and leave_out in ${ADAPTER_CONFIG_FILE} require)`);
      if (entry.shape.join() !== v.shape.join()) {
        throw new Error(`${file.weightsFile}: tensor "${fileKey}" has shape [${entry.shape}] but this model needs [${v.shape}] (bottleneck size ${m}, d_model ${model.config.dModel}); was the adapter trained on another base model?`);
      }
    }
    const unexpected = [...file.tensors.keys()].filter((k) => !adapter.weights.has(k.replace(/^base_model\.model\./, '')) || !k.startsWith('base_model.model.'));
    if (unexpected.length) {
      throw new Error(`${file.weightsFile}: unexpected tensors ${unexpected.slice(0, 5).map((k) => `"${k}"`).join(', ')}${unexpected.length > 5 ? `, … (${unexpected.length})` : ''} for this bottleneck config (placement and leave_out in ${ADAPTER_CONFIG_FILE})`);
    }
    for (const [key, v] of adapter.weights) {
      const t = file.tensors.get(`base_model.model.${key}`)!.read();
      if (!(t.data instanceof Float32Array)) throw new Error(`${file.weightsFile}: tensor "base_model.model.${key}" has dtype ${t.dtype}; a float dtype is needed`);
      const data = t.data;
      tf.tidy(() => v.assign(tf.tensor(data, v.shape)));
    }
    peft(model).add(name, adapter);
    return adapter;
  } catch (e) {
    tf.dispose([...adapter.weights.values()]);
    throw e;
  }
}

registerAdapterLoader('BOTTLENECK', loadBottleneck);
