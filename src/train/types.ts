/**
 * The contracts between the trainer and what it trains with: an objective (the method's loss), a batch
 * source and a penalty. They live here, apart from the classes, so the trainer, the objectives
 * (causal-lm.ts, the RLHF methods) and the regularizers import them without importing each other.
 */
import type * as tf from '@tensorflow/tfjs';
import type { CausalLM } from '../model/transformer';

/** A training method's loss: built inside `tf.variableGrads`, so intermediates are tracked. */
export interface Objective<B> {
  /** Scalar loss of the model on a batch. `seed` varies per micro-step so dropout is reproducible. */
  loss(model: CausalLM, batch: B, ctx: { training: boolean; seed: number }): tf.Scalar;
  /** Tokens in the batch, for tokens/s. */
  tokens(batch: B): number;
  /** Frees the batch's tensors once used. */
  dispose(batch: B): void;
}

/** Deterministic batches whose position can be saved and restored (so resumed runs match). */
export interface BatchSource<B> {
  next(): B;
  state(): unknown;
  restore(state: unknown): void;
}

/** A regularizer of the model's trainable weights, added to the objective's loss by the trainer. */
export interface Penalty {
  readonly name: string;
  /** Scalar penalty of the model's current weights; built inside `tf.variableGrads`, so it is differentiable. */
  term(model: CausalLM): tf.Scalar;
  /** Frees the tensors the penalty keeps (anchor weights, Fisher). */
  dispose(): void;
}
