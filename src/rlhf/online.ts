/**
 * What the on-policy RL trainers (PPO, GRPO, RLOO) share besides the rollouts: the seeded order in which
 * prompts come round, the clipped AdamW update applied after each backward pass, the per-row sampling
 * seeds of a step's rollouts, and the weight bytes their `memory()` reports.
 */
import * as tf from '@tensorflow/tfjs';
import { AdamW, clipScale, globalNorm } from '../train/optimizer';
import type { Rng } from '../util/rng';

/**
 * Prompt indices in a seeded order, reshuffled by the same `rng` each time all have come round.
 *
 * @example
 * const cycle = new PromptCycle(prompts.length, new Rng(0));
 * const batch = cycle.next(16);   // 16 indices; every prompt once before any repeats
 */
export class PromptCycle {
  private readonly order: number[];
  private cursor = 0;

  constructor(count: number, private readonly rng: Rng) {
    this.order = rng.shuffle([...Array(count).keys()]);
  }

  next(n: number): number[] {
    const out: number[] = [];
    for (let i = 0; i < n; i++) {
      if (this.cursor === this.order.length) {
        this.rng.shuffle(this.order);
        this.cursor = 0;
      }
      out.push(this.order[this.cursor++]);
    }
    return out;
  }
}

/**
 * One AdamW step from `grads` (keyed by variable name, as `tf.variableGrads` gives them), clipped to a
 * global norm of `maxGradNorm` as the Trainer does (the clip is a factor of the fused update); frees the
 * gradients and returns the norm before clipping. A NaN/∞ norm throws before any weight changes.
 */
export async function clippedUpdate(optimizer: AdamW, params: Map<string, tf.Variable>, grads: tf.NamedTensorMap, o: { lr: number; maxGradNorm: number; what: string; step: number }): Promise<number> {
  try {
    const byPath = new Map([...params].map(([path, v]) => [path, grads[v.name]]));
    const norm = await globalNorm([...byPath.values()]);
    if (!Number.isFinite(norm)) throw new Error(`${o.what}: gradient norm is ${norm} at step ${o.step}`);
    optimizer.apply(byPath, o.lr, clipScale(norm, o.maxGradNorm));
    return norm;
  } finally {
    tf.dispose(Object.values(grads));
  }
}

/** One sampling seed per rollout row of step `step`, a fixed mix of (`seed`, step, row): same seed → same rollouts. */
export function rolloutSeeds(seed: number, step: number, rows: number): number[] {
  return Array.from({ length: rows }, (_, r) => (seed * 1000003 + step * 7919 + r * 104729) % 2147483647);
}

/** Bytes of float32 weights (4 each) in `params`, e.g. a model's `params.values()` or `adapterParams.values()`. */
export function weightBytes(params: Iterable<{ variable: tf.Variable }>): number {
  return [...params].reduce((s, p) => s + p.variable.size * 4, 0);
}
