/**
 * Penalties against catastrophic forgetting: terms added to the training loss that pull the weights back
 * toward where fine-tuning started. Pass one as `TrainerOptions.penalty` to any trainer
 * (`new Trainer(…)`, `continuedPretraining`, `sft`, `multiTaskSft`).
 *
 * - {@link l2sp}: every weight equally (Li et al., arXiv 1802.01483).
 * - {@link ewc}: each weight by how much the general-domain loss depends on it, its Fisher information
 *   (Kirkpatrick et al., arXiv 1612.00796).
 */
import * as tf from '@tensorflow/tfjs';
import type { CausalLM } from '../model/transformer';
import { withDefaults } from '../util/options';
import { LmBatch, causalLmObjective, evalWindows } from './causal-lm';
import type { Penalty } from './types';

export type { Penalty } from './types';

/** Options of {@link l2sp}. */
export interface L2spConfig {
  /** Strength α of Ω = (α/2)·Σ‖w − w⁰‖². */
  alpha: number;
}

/**
 * Defaults of {@link l2sp}. α = 0.1, measured on the shipped tiny base: 60 steps of continued pretraining on
 * 30 domain documents (seqLen 64, batch 8, lr 2e-3) lower domain held-out loss by 1.48 and raise general
 * held-out loss by 1.38 without a penalty; α = 0.01 gives −1.47 / +0.95, α = 0.1 gives −1.36 / +0.44 (92 % of
 * the domain gain, a third of the forgetting), α = 1 gives −0.83 / +0.14 (most of the gain is gone). Li et al.
 * chose α by validation; so should you, for longer runs or other models.
 */
export const l2spDefaults: Readonly<L2spConfig> = Object.freeze({ alpha: 0.1 });

/** Options of {@link ewc}. */
export interface EwcConfig {
  /** Strength λ of Ω = (λ/2)·Σ F_i (θ_i − θ*_i)². */
  lambda: number;
  /** Scale F to mean 1 over all entries, so λ means what α means in {@link l2sp}. */
  normalize: boolean;
  /** Window length when the Fisher is estimated from tokens; `null` = the model's context length. */
  seqLen: number | null;
  /** Most windows (samples) the Fisher is estimated from. */
  samples: number;
}

/**
 * Defaults of {@link ewc}. With `normalize` the mean weight of a parameter is 1, as in L2-SP, so λ = α = 0.1;
 * EWC spends that pull on the weights general text needs. In the run described at {@link l2spDefaults}
 * (Fisher of 32 general-text windows of 64 tokens, ~2 s), λ = 0.1 gives −1.46 / +0.55 (98 % of the domain
 * gain, 40 % of the forgetting), λ = 1 gives −1.20 / +0.16, λ = 10 gives −0.56 / +0.02: at equal domain gain
 * it forgets less than L2-SP.
 */
export const ewcDefaults: Readonly<EwcConfig> = Object.freeze({ lambda: l2spDefaults.alpha, normalize: true, seqLen: null, samples: 32 });

/** Throws an error naming the option when `ok` is false. */
function check(ok: boolean, where: string, key: string, rule: string, value: unknown): void {
  if (!ok) throw new Error(`${where}.${key} ${rule} (got ${String(value)})`);
}

/** A kept copy of the model's trainable weights: the anchor a penalty pulls toward. */
function snapshot(model: CausalLM): Map<string, tf.Tensor> {
  return new Map([...model.trainableParams()].map(([path, v]) => [path, tf.keep(v.clone())]));
}

/**
 * The model's trainable variables, in the anchor's order; throws naming the parameter when the trainable set
 * no longer matches the one the penalty was created for (a frozen, unfrozen or reshaped parameter).
 */
function matching(name: string, model: CausalLM, anchor: Map<string, tf.Tensor>): tf.Variable[] {
  const params = model.trainableParams();
  for (const path of params.keys()) {
    if (!anchor.has(path)) throw new Error(`${name}: trainable parameter "${path}" was not trainable when the penalty was created; create a new penalty`);
  }
  return [...anchor].map(([path, a]) => {
    const v = params.get(path);
    if (!v) throw new Error(`${name}: parameter "${path}" is no longer trainable; create a new penalty`);
    if (!tf.util.arraysEqual(v.shape, a.shape)) throw new Error(`${name}: parameter "${path}" has shape [${v.shape}], the penalty was created for [${a.shape}]`);
    return v;
  });
}

/**
 * L2-SP (Li, Grandvalet, Davoine, "Explicit Inductive Bias for Transfer Learning with Convolutional
 * Networks", arXiv 1802.01483): Ω = (α/2)·Σ‖w − w⁰‖² over the model's trainable parameters, with w⁰ their
 * values now. Unlike weight decay, which pulls toward 0 and so away from what pretraining learned, it pulls
 * toward the starting point. Its gradient is α(w − w⁰).
 *
 * @example
 * const { model, tokenizer } = await base('tiny-llama');
 * const penalty = l2sp(model, { alpha: 0.1 });
 * await continuedPretraining(model, tokenizer, docs, { maxSteps: 100 }, { penalty });
 * penalty.dispose();
 */
export function l2sp(model: CausalLM, config: Partial<L2spConfig> = {}): Penalty {
  const c = withDefaults(l2spDefaults, config, 'l2sp');
  check(Number.isFinite(c.alpha) && c.alpha >= 0, 'L2spConfig', 'alpha', 'must be ≥ 0', c.alpha);
  const anchor = snapshot(model);
  const anchors = [...anchor.values()];
  return {
    name: 'l2sp',
    term: (m) => tf.tidy(() => {
      const vars = matching('l2sp', m, anchor);
      const sq = vars.map((v, i) => tf.sum(tf.square(tf.sub(v, anchors[i]))));
      return tf.mul(c.alpha / 2, tf.addN(sq)) as tf.Scalar;
    }),
    dispose: () => tf.dispose(anchors),
  };
}

/** Options of {@link fisherDiagonal}. */
export interface FisherOptions {
  /** Most batches used (`Infinity` = all); the rest of the iterable is not read. */
  samples: number;
}

/**
 * Diagonal empirical Fisher of the causal-LM loss: the mean over samples of the squared gradient of each
 * trainable parameter, F_i = E[(∂L/∂θ_i)²], at the current weights (no dropout).
 *
 * Each batch is one sample. The Fisher is an expectation of squared per-example gradients; squaring the
 * gradient of a batch mean would instead average gradients first and underestimate it, so pass batches of
 * one window (as {@link ewc} does) for the per-window Fisher. The gradient is of the window's mean token
 * loss, which keeps F on the scale of the loss the trainer optimizes. "Empirical": the observed next tokens
 * are the targets, not tokens sampled from the model (cheaper; the usual choice for language models).
 *
 * Returns new tensors keyed by parameter path; the caller disposes them. Batches are disposed once used.
 */
export function fisherDiagonal(model: CausalLM, batches: Iterable<LmBatch>, options: Partial<FisherOptions> = {}): Map<string, tf.Tensor> {
  const samples = options.samples ?? Infinity;
  check(samples === Infinity || (Number.isInteger(samples) && samples >= 1), 'FisherOptions', 'samples', 'must be an integer ≥ 1', samples);
  const params = model.trainableParams();
  if (params.size === 0) throw new Error('fisherDiagonal: the model has no trainable parameters');
  const vars = [...params.values()];
  let sums = vars.map((v) => tf.zerosLike(v) as tf.Tensor);
  let n = 0;
  for (const batch of batches) {
    const { value, grads } = tf.variableGrads(() => causalLmObjective.loss(model, batch, { training: false, seed: 0 }), vars);
    causalLmObjective.dispose(batch);
    const prev = sums;
    sums = tf.tidy(() => vars.map((v, i) => tf.add(prev[i], tf.square(grads[v.name]))));
    tf.dispose([value, prev, Object.values(grads)]);
    if (++n >= samples) break; // before the iterator makes another batch
  }
  if (n === 0) {
    tf.dispose(sums);
    throw new Error('fisherDiagonal: no batches');
  }
  const fisher = new Map([...params.keys()].map((path, i) => [path, tf.div(sums[i], n)]));
  tf.dispose(sums);
  return fisher;
}

/**
 * Elastic weight consolidation (Kirkpatrick et al., "Overcoming catastrophic forgetting in neural
 * networks", arXiv 1612.00796): Ω = (λ/2)·Σ F_i (θ_i − θ*_i)², a Laplace approximation of the old task's
 * posterior around θ* (the weights now), whose precision is the diagonal Fisher F. Weights the general
 * domain barely depends on stay free to move; the ones it needs are held.
 *
 * `fisherOrData` is either a Fisher map from {@link fisherDiagonal} (copied; the caller keeps its own) or
 * `{ tokens }`, a general-domain token stream cut into `seqLen` windows, at most `samples` of them, one window
 * per sample.
 *
 * `normalize` (default true) divides F by its mean over all entries. The raw Fisher's scale depends on the
 * model, the data and the loss (on the shipped tiny base its mean is ~2e-5, its largest entry ~700× the
 * mean), so a raw λ has no portable meaning. With mean 1, Ω equals L2-SP's with α = λ when F is flat, so λ
 * is chosen on the same scale as α: EWC only redistributes the pull across weights.
 *
 * @example
 * const general = tokenStream(tokenizer, textDocuments('datasets/general/heldout.txt', '\n\n\n'));
 * const penalty = ewc(model, { tokens: general }, { lambda: 0.1, seqLen: 64 });
 * await continuedPretraining(model, tokenizer, docs, { maxSteps: 100 }, { penalty });
 * penalty.dispose();
 */
export function ewc(model: CausalLM, fisherOrData: Map<string, tf.Tensor> | { tokens: ArrayLike<number> }, config: Partial<EwcConfig> = {}): Penalty {
  const c = withDefaults(ewcDefaults, config, 'ewc');
  check(Number.isFinite(c.lambda) && c.lambda >= 0, 'EwcConfig', 'lambda', 'must be ≥ 0', c.lambda);
  check(typeof c.normalize === 'boolean', 'EwcConfig', 'normalize', 'must be a boolean', c.normalize);
  check(Number.isInteger(c.samples) && c.samples >= 1, 'EwcConfig', 'samples', 'must be an integer ≥ 1', c.samples);
  const seqLen = c.seqLen ?? model.config.contextLength;
  check(Number.isInteger(seqLen) && seqLen >= 1 && seqLen <= model.config.contextLength, 'EwcConfig', 'seqLen', `must be an integer in [1, ${model.config.contextLength}]`, c.seqLen);
  const given = fisherOrData instanceof Map;
  const raw = given ? fisherOrData : fisherDiagonal(model, evalWindows(fisherOrData.tokens, seqLen, 1, 'EWC Fisher data'), { samples: c.samples });
  const anchor = snapshot(model);
  const fisher = new Map<string, tf.Tensor>();
  try {
    for (const [path, a] of anchor) {
      const f = raw.get(path);
      if (!f) throw new Error(`ewc: the Fisher has no entry for trainable parameter "${path}"`);
      if (!tf.util.arraysEqual(f.shape, a.shape)) throw new Error(`ewc: the Fisher of "${path}" has shape [${f.shape}], the parameter [${a.shape}]`);
    }
    const total = tf.tidy(() => tf.addN([...anchor.keys()].map((p) => tf.sum(raw.get(p)!))).dataSync()[0]);
    const count = [...anchor.values()].reduce((s, a) => s + a.size, 0);
    const scale = c.normalize ? count / total : 1;
    if (!Number.isFinite(scale) || scale <= 0) throw new Error(`ewc: cannot normalize a Fisher whose mean is ${total / count}`);
    for (const path of anchor.keys()) fisher.set(path, tf.keep(tf.mul(raw.get(path)!, scale)));
  } catch (e) {
    tf.dispose([...anchor.values(), ...fisher.values()]);
    throw e;
  } finally {
    if (!given) tf.dispose([...raw.values()]);
  }
  const fs = [...fisher.values()];
  const anchors = [...anchor.values()];
  return {
    name: 'ewc',
    term: (m) => tf.tidy(() => {
      const vars = matching('ewc', m, anchor);
      const sq = vars.map((v, i) => tf.sum(tf.mul(fs[i], tf.square(tf.sub(v, anchors[i])))));
      return tf.mul(c.lambda / 2, tf.addN(sq)) as tf.Scalar;
    }),
    dispose: () => tf.dispose([...anchors, ...fs]),
  };
}
