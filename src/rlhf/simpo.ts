/**
 * SimPO (Meng, Xia & Chen, "SimPO: Simple Preference Optimization with a Reference-Free Reward",
 * arXiv 2405.14734) as TRL's `CPOTrainer` with `loss_type="simpo"`: no reference model; the implicit reward
 * is the length-normalised log-prob (mean over completion tokens) times β, and the Bradley-Terry loss asks
 * for a target margin γ:  −log σ(β·(avg_logp_c − avg_logp_r) − γ),  plus `cpoAlpha` × NLL of the chosen
 * completions (CPO-SimPO; 0 = pure SimPO).
 */
import * as tf from '@tensorflow/tfjs';
import type { CausalLM } from '../model/transformer';
import type { Tokenizer } from '../tokenizer/tokenizer';
import type { PreferenceRow, TokenizeReport } from '../data/tokenize';
import { TrainConfig, TrainerOptions, Trainer, trainConfigKeys } from '../train/trainer';
import { withDefaults } from '../util/options';
import { type DpoBatch, pairBatchLoss } from './dpo';
import type { LossAndMetrics, MetricRun } from './metric-run';
import { PairLogProbs, averageLogProbs, rewardMetrics, trainPairMethod } from './preference';

/** Metric names, as TRL's CPOTrainer logs them. */
export const simpoMetricNames = [
  'rewards/chosen', 'rewards/rejected', 'rewards/accuracies', 'rewards/margins', 'logps/chosen', 'logps/rejected',
  'logits/chosen', 'logits/rejected', 'nll_loss',
] as const;
export type SimpoMetricName = (typeof simpoMetricNames)[number];

function checkSimpo(beta: number, gamma: number, cpoAlpha: number): void {
  if (!(beta > 0) || !Number.isFinite(beta)) throw new RangeError(`SimPO beta must be finite and > 0 (got ${beta})`);
  if (!Number.isFinite(gamma)) throw new RangeError(`SimPO gamma must be finite (got ${gamma})`);
  if (!(cpoAlpha >= 0) || !Number.isFinite(cpoAlpha)) throw new RangeError(`SimPO cpoAlpha must be finite and ≥ 0 (got ${cpoAlpha})`);
}

/**
 * The SimPO loss of a batch of pairs (mean over pairs, plus `cpoAlpha` × chosen NLL) and TRL's metrics
 * (rewards are β × mean log-probs). Pass completion log-prob *sums* and token counts.
 *
 * @example
 * const { loss, metrics } = tf.tidy(() => simpoLoss({ policyChosen, policyRejected, chosenCount, rejectedCount }, 2.0, 0.5));
 */
export function simpoLoss(logps: PairLogProbs, beta = 2.0, gamma = 0.5, cpoAlpha = 0): LossAndMetrics<Exclude<SimpoMetricName, `logits/${string}`>> {
  checkSimpo(beta, gamma, cpoAlpha);
  return tf.tidy(() => {
    const avg = averageLogProbs(logps);
    const rc = tf.mul(avg.chosen, beta) as tf.Tensor1D;
    const rr = tf.mul(avg.rejected, beta) as tf.Tensor1D;
    // −log σ(z) = softplus(−z) (tf.logSigmoid's gradient reads a tensor tidy frees).
    const pref = tf.mean(tf.softplus(tf.neg(tf.sub(tf.sub(rc, rr), gamma))));
    const loss = (cpoAlpha > 0 ? tf.add(pref, tf.mul(avg.nll, cpoAlpha)) : pref) as tf.Scalar;
    return { loss, metrics: { ...rewardMetrics(rc, rr, avg.chosen, avg.rejected), nll_loss: avg.nll } };
  });
}

/** Options of {@link simpo}: the shared {@link TrainConfig} plus TRL `CPOConfig`'s SimPO knobs. */
export interface SimpoConfig extends TrainConfig {
  /** Reward scale β (SimPO paper: 2.0–2.5; TRL's `CPOConfig.beta` 0.1 is CPO's, too small for mean log-probs). */
  beta: number;
  /** Target reward margin γ (TRL `simpo_gamma`: 0.5). */
  gamma: number;
  /** Weight of the chosen NLL (TRL `cpo_alpha`; TRL's SimPO recipe sets 0, CPO-SimPO > 0). */
  cpoAlpha: number;
  /** Longest prompt + completion in tokens (TRL `max_length`: 1024), capped to the model's context + 1. */
  maxLength: number;
  /** Pairs per micro-batch; the policy sees 2× rows (HF `per_device_train_batch_size`: 8). */
  batchSize: number;
  /** Held-out preference rows; metrics on them every `evalEvery` steps and at the end. `null` = no eval. */
  evalRows: readonly PreferenceRow[] | null;
  /** Evaluate before the first step too (the chart's baseline; HF `eval_on_start`: false). */
  evalOnStart: boolean;
}

/**
 * Defaults: β 2.0 (the paper's), γ 0.5 and cpoAlpha 0 (TRL's SimPO). lr 2e-4 instead of TRL's 1e-6, as
 * for DPO: TRL's rate is for billion-parameter models; the shipped base is 1M parameters.
 */
export const simpoDefaults: Readonly<Omit<SimpoConfig, keyof TrainConfig> & Partial<TrainConfig>> = Object.freeze({
  lr: 2e-4, beta: 2.0, gamma: 0.5, cpoAlpha: 0, maxLength: 1024, batchSize: 8, evalRows: null, evalOnStart: true,
});

/** A step's or an eval's SimPO metrics. */
export type SimpoMetrics = { step: number; loss: number } & Record<SimpoMetricName, number>;

/** What {@link simpo} returns. */
export interface SimpoResult extends MetricRun<SimpoMetricName> {
  /** Tokenization of the train (and eval) rows. */
  data: { train: TokenizeReport & { pairs: number }; eval?: TokenizeReport & { pairs: number } };
}

/**
 * Trains `model` with SimPO on preference rows `{prompt?, chosen, rejected}` (the shipped
 * `dataset('preferences')`); no reference model is held.
 *
 * @example
 * const r = await simpo(model, tokenizer, dataset('preferences'), { maxSteps: 50, evalRows: dataset('preferences', 'heldout') });
 * r.evalMetrics.at(-1)!['rewards/accuracies'];
 */
export async function simpo(
  model: CausalLM, tokenizer: Tokenizer, rows: readonly PreferenceRow[], config: Partial<SimpoConfig> = {},
  options: TrainerOptions<DpoBatch> & { onTrainer?: (t: Trainer<DpoBatch>) => void } = {},
): Promise<SimpoResult> {
  const c = withDefaults(simpoDefaults, config, 'simpo', trainConfigKeys) as SimpoConfig;
  checkSimpo(c.beta, c.gamma, c.cpoAlpha);
  return trainPairMethod('simpo', model, tokenizer, rows, c, simpoMetricNames, pairBatchLoss((l) => simpoLoss(l, c.beta, c.gamma, c.cpoAlpha)), options);
}
