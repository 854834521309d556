/**
 * AdamW (Loshchilov & Hutter, arXiv 1711.05101): Adam with decoupled weight decay,
 * p ← p − lr·(m̂/(√v̂ + ε) + λ·p), where decay applies only to matrices (not norms, biases, embeddings).
 */
import * as tf from '@tensorflow/tfjs';
import { fusedOps, useFused } from '../engine/fused';
import { withDefaults } from '../util/options';

/** AdamW hyper-parameters; defaults are Hugging Face `TrainingArguments`' (β = 0.9/0.999, ε = 1e-8, λ = 0). */
export interface AdamWOptions {
  beta1: number;
  beta2: number;
  eps: number;
  weightDecay: number;
}

/** Defaults of {@link AdamWOptions}. */
export const adamWDefaults: Readonly<AdamWOptions> = Object.freeze({ beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0 });

/** Whether weight decay applies to a parameter: matrices only, and never embeddings. */
export function decays(path: string, variable: tf.Variable): boolean {
  return variable.rank >= 2 && !/embed/.test(path);
}

/** AdamW over a fixed set of named variables; its moments are named like the variables for checkpoints. */
export class AdamW {
  readonly options: AdamWOptions;
  /** Optimizer steps taken (for bias correction). */
  step = 0;
  private readonly m = new Map<string, tf.Variable>();
  private readonly v = new Map<string, tf.Variable>();

  constructor(private readonly params: Map<string, tf.Variable>, options: Partial<AdamWOptions> = {}) {
    this.options = withDefaults(adamWDefaults, options, 'AdamW');
    for (const [path, p] of params) {
      for (const moments of [this.m, this.v]) {
        const zeros = tf.zerosLike(p);
        moments.set(path, tf.variable(zeros, false));
        zeros.dispose(); // the variable holds its own reference to the data
      }
    }
  }

  /**
   * Applies one update with learning rate `lr`; `grads` holds a gradient per parameter path, multiplied by
   * `gradScale` first (gradient clipping's factor, {@link clipScale}).
   */
  apply(grads: Map<string, tf.Tensor>, lr: number, gradScale = 1): void {
    const { beta1, beta2, eps, weightDecay } = this.options;
    this.step++;
    const c1 = 1 - Math.pow(beta1, this.step);
    const c2 = 1 - Math.pow(beta2, this.step);
    tf.tidy(() => {
      for (const [path, p] of this.params) {
        const raw = grads.get(path);
        if (!raw) continue;
        const m = this.m.get(path)!;
        const v = this.v.get(path)!;
        const decay = weightDecay > 0 && decays(path, p) ? weightDecay : 0;
        if (useFused(p, raw, m, v)) {
          // One pass on the native engine: the same update, 3 reads and 3 writes per element.
          const [pNew, mNew, vNew] = fusedOps.adamw(p, raw, m, v, { lr, beta1, beta2, eps, weightDecay: decay, biasCorrection1: c1, biasCorrection2: c2, gradScale });
          m.assign(mNew);
          v.assign(vNew);
          p.assign(pNew);
          continue;
        }
        const g = gradScale === 1 ? raw : tf.mul(raw, gradScale);
        m.assign(tf.add(tf.mul(m, beta1), tf.mul(g, 1 - beta1)));
        v.assign(tf.add(tf.mul(v, beta2), tf.mul(tf.square(g), 1 - beta2)));
        let update = tf.div(tf.div(m, c1), tf.add(tf.sqrt(tf.div(v, c2)), eps));
        if (decay > 0) update = tf.add(update, tf.mul(p, decay));
        p.assign(tf.sub(p, tf.mul(update, lr)));
      }
    });
  }

  /** Moments as plain arrays keyed `m.<path>` / `v.<path>`, for checkpoints. */
  async state(): Promise<{ step: number; tensors: Record<string, { shape: number[]; data: Float32Array }> }> {
    const tensors: Record<string, { shape: number[]; data: Float32Array }> = {};
    for (const [kind, map] of [['m', this.m], ['v', this.v]] as const) {
      for (const [path, t] of map) tensors[`${kind}.${path}`] = { shape: t.shape, data: (await t.data()) as Float32Array };
    }
    return { step: this.step, tensors };
  }

  /** Restores moments saved by {@link state}; every moment must be present with its parameter's shape. */
  restore(step: number, tensors: Map<string, { shape: number[]; data: Float32Array }>, source: string): void {
    for (const [kind, map] of [['m', this.m], ['v', this.v]] as const) {
      for (const [path, t] of map) {
        const saved = tensors.get(`${kind}.${path}`);
        if (!saved) throw new Error(`${source}: optimizer state has no tensor "${kind}.${path}"`);
        if (saved.shape.join() !== t.shape.join()) {
          throw new Error(`${source}: optimizer tensor "${kind}.${path}" has shape [${saved.shape}], expected [${t.shape}]`);
        }
        tf.tidy(() => t.assign(tf.tensor(saved.data, saved.shape)));
      }
    }
    this.step = step;
  }

  /** Frees the moments. */
  dispose(): void {
    for (const t of [...this.m.values(), ...this.v.values()]) t.dispose();
    this.m.clear();
    this.v.clear();
  }
}

/**
 * The global L2 norm of gradients, as a number: one native pass over all of them on the native engine, else
 * √Σ sum(g²) in tfjs ops (read back asynchronously). NaN or ∞ passes through for the caller to report.
 */
export async function globalNorm(grads: readonly tf.Tensor[]): Promise<number> {
  if (grads.length === 0) return 0;
  if (useFused(...grads)) return Math.sqrt(fusedOps.sumSquares(grads));
  const norm = tf.tidy(() => tf.sqrt(tf.addN(grads.map((g) => tf.sum(tf.square(g))))));
  const value = (await norm.data())[0];
  norm.dispose();
  return value;
}

/** PyTorch's `clip_grad_norm_` factor: min(1, maxNorm / (norm + 1e-6)); 1 when `maxNorm` is 0 (no clipping). */
export function clipScale(norm: number, maxNorm: number): number {
  return maxNorm > 0 ? Math.min(1, maxNorm / (norm + 1e-6)) : 1;
}
