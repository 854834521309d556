/**
 * A scalar head on a causal LM's final hidden states: the reward model's r(x, y) and PPO's value V(s).
 * Its weights live in `model.adapterParams` (under `heads.<name>.*`), so every trainer and optimizer
 * sees them and the base checkpoint stays a plain language model.
 */
import * as tf from '@tensorflow/tfjs';
import type { CausalLM } from '../model/transformer';

/** A linear map d_model → 1 read from hidden states. */
export class ScalarHead {
  readonly weight: tf.Variable;
  readonly bias: tf.Variable;

  /**
   * @param name key prefix in `model.adapterParams` (`heads.<name>.weight`, `.bias`)
   * @param std init std of the weight (TRL's value head: a small normal; reward heads likewise)
   */
  constructor(readonly model: CausalLM, readonly name: string, options: { std?: number; seed?: number } = {}) {
    const d = model.config.dModel;
    const key = (k: string) => `heads.${name}.${k}`;
    if (model.adapterParams.has(key('weight'))) throw new Error(`model already has a scalar head "${name}"`);
    const init = [tf.randomNormal([d, 1], 0, options.std ?? 1 / Math.sqrt(d + 1), 'float32', options.seed || 0x7fffffff), tf.zeros([1])]; // seed 0 = unseeded in tfjs
    this.weight = tf.variable(init[0], true);
    this.bias = tf.variable(init[1], true);
    tf.dispose(init);
    model.adapterParams.set(key('weight'), { variable: this.weight, trainable: true });
    model.adapterParams.set(key('bias'), { variable: this.bias, trainable: true });
  }

  /** Scalars at every position: hidden (B, T, d) → (B, T). */
  apply(hidden: tf.Tensor3D): tf.Tensor2D {
    return tf.tidy(() => {
      const [b, t, d] = hidden.shape;
      const flat = tf.add(tf.matMul(tf.reshape(hidden, [b * t, d]) as tf.Tensor2D, this.weight as tf.Tensor2D), this.bias);
      return tf.reshape(flat, [b, t]) as tf.Tensor2D;
    });
  }

  /** The scalar at each row's position `index[b]` (e.g. its last real token): (B,). */
  at(values: tf.Tensor2D, index: tf.Tensor1D): tf.Tensor1D {
    return tf.tidy(() => tf.sum(tf.mul(values, tf.oneHot(index, values.shape[1])), -1) as tf.Tensor1D);
  }

  /** Whether the head's weights train. */
  set trainable(on: boolean) {
    for (const k of ['weight', 'bias']) this.model.adapterParams.get(`heads.${this.name}.${k}`)!.trainable = on;
  }

  /** Removes the head from the model and frees it. */
  dispose(): void {
    for (const k of ['weight', 'bias']) this.model.adapterParams.delete(`heads.${this.name}.${k}`);
    tf.dispose([this.weight, this.bias]);
  }
}
