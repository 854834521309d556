/**
 * Gradient checkpointing (Chen et al., arXiv 1604.06174; PyTorch's `torch.utils.checkpoint`, which
 * Hugging Face's `gradient_checkpointing` applies per decoder layer): a block's forward keeps only its
 * inputs, and the backward runs the block again to rebuild the activations its gradients need. Memory
 * per block drops from all its intermediates to its input; the price is a second forward per step.
 *
 * tfjs 4.22 has no such primitive. `tf.customGrad` runs its forward with the tape off (only the custom
 * node is recorded), and its gradient function recomputes the block under a fresh tape with
 * `engine.gradients`. That inner call replaces and then nulls the engine's active tape, which the outer
 * backward still walks and frees at its end ("Cannot read properties of null (reading 'forEach')"), so
 * the outer tape is put back around it.
 */
import * as tf from '@tensorflow/tfjs';
import type { CausalLM } from './transformer';

/** What one checkpointed call reads, besides the variables in its closure. */
export interface CheckpointInputs {
  /** Tensors whose gradients flow back (the residual stream, trainable prefixes). */
  differentiable: tf.Tensor[];
  /** Tensors read but never differentiated (masks, RoPE tables): zero gradients, saved for the recompute. */
  fixed: tf.Tensor[];
}

/** Trainable variables a checkpointed block may read, and the ones it must not (their gradients would be lost). */
export interface CheckpointVariables {
  /** Variables whose gradients the block returns (its own weights and adapters). */
  own: tf.Variable[];
  /** Other trainable variables by tensor id → path, for a clear error if the block reads one. */
  others: ReadonlyMap<number, string>;
}

/**
 * Runs `block(differentiable, fixed)` so that its intermediates are freed after the forward and
 * recomputed in the backward. `block` must be a pure function of its arguments and the variables it
 * reads: the same result when run again (draw dropout seeds before, not inside). Gradients reach
 * `inputs.differentiable` and `vars.own`; a block that reads a trainable variable outside `vars.own`
 * throws in the backward, naming `where` and the variable, rather than dropping its gradient.
 *
 * @example
 * const y = checkpoint(([x], [mask]) => layer(x, mask), { differentiable: [x], fixed: [mask] },
 *   { own: [w1, w2], others: new Map() }, 'layers.0');
 */
export function checkpoint(
  block: (differentiable: tf.Tensor[], fixed: tf.Tensor[]) => tf.Tensor,
  inputs: CheckpointInputs, vars: CheckpointVariables, where: string,
): tf.Tensor {
  const nd = inputs.differentiable.length;
  const nf = inputs.fixed.length;
  const f = tf.customGrad((...args) => {
    const save = args[args.length - 1] as tf.GradSaveFunc;
    const tensors = args.slice(0, nd + nf) as tf.Tensor[];
    // The inputs are intermediates of the caller's forward, freed before the backward: keep them.
    save(tensors);
    const value = block(tensors.slice(0, nd), tensors.slice(nd));
    return {
      value,
      gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => {
        const d = saved.slice(0, nd);
        const fixed = saved.slice(nd);
        const xs = [...d, ...vars.own];
        const engine = tf.engine();
        const outer = engine.state.activeTape;
        let grads: (tf.Tensor | undefined)[];
        try {
          const res = engine.gradients(() => {
            const y = block(d, fixed);
            checkReads(engine.state.activeTape ?? [], vars.others, where);
            return y;
          }, xs, dy, true);
          res.value.dispose();
          grads = res.grads;
        } finally {
          engine.state.activeTape = outer;
        }
        // A variable the block did not read this time (e.g. an adapter switched off) gets a zero gradient.
        const g = xs.map((x, i) => grads[i] ?? tf.zerosLike(x));
        // In customGrad's input order: differentiable, fixed, variables.
        return [...g.slice(0, nd), ...fixed.map((t) => tf.zerosLike(t)), ...g.slice(nd)];
      },
    };
  });
  return f(...inputs.differentiable, ...inputs.fixed, ...vars.own);
}

/**
 * Runs `fn` (a gradient computation, e.g. `tf.variableGrads`) with {@link CausalLM.gradientCheckpointing}
 * on when `on` is true, then restores the model's setting: how a training loop applies its
 * `gradientCheckpointing` option to its own gradients only, leaving evaluation and generation alone.
 *
 * @example
 * const { value, grads } = withGradientCheckpointing(model, config.gradientCheckpointing, () => tf.variableGrads(loss, vars));
 */
export function withGradientCheckpointing<T>(model: CausalLM, on: boolean, fn: () => T): T {
  const before = model.gradientCheckpointing;
  model.gradientCheckpointing = before || on;
  try {
    return fn();
  } finally {
    model.gradientCheckpointing = before;
  }
}

/** Throws if a recorded op read a trainable variable that is not the block's own. */
function checkReads(tape: { inputs: tf.NamedTensorMap }[], others: ReadonlyMap<number, string>, where: string): void {
  if (others.size === 0) return;
  for (const node of tape) {
    for (const t of Object.values(node.inputs)) {
      const path = others.get(t.id);
      if (path !== undefined) {
        throw new Error(`gradientCheckpointing: ${where} reads trainable parameter "${path}", which is not one of its own, so its gradient would be lost; turn gradientCheckpointing off for this model`);
      }
    }
  }
}
