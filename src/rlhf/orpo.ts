/**
 * ORPO (Hong, Lee & Thorne, "ORPO: Monolithic Preference Optimization without Reference Model",
 * arXiv 2403.07691) with TRL `ORPOTrainer` semantics: SFT and preference in one loss, no reference model.
 * With mean completion log-probs a_c, a_r and log odds(y) = a − log(1 − exp(a)):
 *   L = NLL(chosen) − λ · mean log σ(log odds_c − log odds_r),
 * λ being TRL's `beta`; rewards are β × mean log-probs, as TRL logs them.
 */
import * as tf from '@tensorflow/tfjs';
import type { CausalLM } from '../model/transformer';
import type { Tokenizer } from '../tokenizer/tokenizer';
import type { PreferenceRow } from '../data/tokenize';
import { TrainConfig, TrainerOptions, Trainer, trainConfigKeys } from '../train/trainer';
import { withDefaults } from '../util/options';
import { type DpoBatch, pairBatchLoss } from './dpo';
import type { LossAndMetrics, MetricRun } from './metric-run';
import { PairLogProbs, averageLogProbs, rewardMetrics, trainPairMethod } from './preference';
import type { TokenizeReport } from '../data/tokenize';

/** Metric names, as TRL's ORPOTrainer logs them. */
export const orpoMetricNames = [
  'rewards/chosen', 'rewards/rejected', 'rewards/accuracies', 'rewards/margins', 'logps/chosen', 'logps/rejected',
  'logits/chosen', 'logits/rejected', 'nll_loss', 'log_odds_ratio', 'log_odds_chosen',
] as const;
export type OrpoMetricName = (typeof orpoMetricNames)[number];

function checkBeta(beta: number): void {
  if (!(beta >= 0) || !Number.isFinite(beta)) throw new RangeError(`ORPO beta (λ) must be finite and ≥ 0 (got ${beta})`);
}

/**
 * The ORPO loss of a batch of pairs and TRL's metrics (`log_odds_ratio` = mean log σ of the log odds ratio,
 * `log_odds_chosen` = its mean). Pass completion log-prob *sums* and token counts.
 *
 * @example
 * const { loss, metrics } = tf.tidy(() => orpoLoss({ policyChosen, policyRejected, chosenCount, rejectedCount }, 0.1));
 */
export function orpoLoss(logps: PairLogProbs, beta = 0.1): LossAndMetrics<Exclude<OrpoMetricName, `logits/${string}`>> {
  checkBeta(beta);
  return tf.tidy(() => {
    const avg = averageLogProbs(logps);
    // log(1 − exp(a)) as TRL's log1p(−exp(a)); a < 0 for any completion the model does not predict surely.
    const logOdds = (a: tf.Tensor1D) => tf.sub(a, tf.log1p(tf.neg(tf.exp(a))));
    const ratio = tf.sub(logOdds(avg.chosen), logOdds(avg.rejected));
    const logSigmoid = tf.neg(tf.softplus(tf.neg(ratio))); // not tf.logSigmoid: its gradient reads a tensor tidy frees
    const loss = tf.sub(avg.nll, tf.mul(tf.mean(logSigmoid), beta)) as tf.Scalar;
    const rc = tf.mul(avg.chosen, beta) as tf.Tensor1D;
    const rr = tf.mul(avg.rejected, beta) as tf.Tensor1D;
    return {
      loss,
      metrics: { ...rewardMetrics(rc, rr, avg.chosen, avg.rejected), nll_loss: avg.nll, log_odds_ratio: tf.mean(logSigmoid) as tf.Scalar, log_odds_chosen: tf.mean(ratio) as tf.Scalar },
    };
  });
}

/** Options of {@link orpo}: the shared {@link TrainConfig} plus TRL `ORPOConfig`'s knobs. */
export interface OrpoConfig extends TrainConfig {
  /** λ, the weight of the odds-ratio term (TRL `beta`: 0.1). */
  beta: number;
  /** Longest prompt + completion in tokens (TRL `max_length`: 1024), capped to the model's context + 1. */
  maxLength: number;
  /** Pairs per micro-batch; the policy sees 2× rows (HF `per_device_train_batch_size`: 8). */
  batchSize: number;
  /** Held-out preference rows; metrics on them every `evalEvery` steps and at the end. `null` = no eval. */
  evalRows: readonly PreferenceRow[] | null;
  /** Evaluate before the first step too (the chart's baseline; HF `eval_on_start`: false). */
  evalOnStart: boolean;
}

/** Defaults: TRL's β 0.1; lr 2e-4 instead of TRL's 1e-6, as for DPO (the shipped base is 1M parameters). */
export const orpoDefaults: Readonly<Omit<OrpoConfig, keyof TrainConfig> & Partial<TrainConfig>> = Object.freeze({
  lr: 2e-4, beta: 0.1, maxLength: 1024, batchSize: 8, evalRows: null, evalOnStart: true,
});

/** A step's or an eval's ORPO metrics. */
export type OrpoMetrics = { step: number; loss: number } & Record<OrpoMetricName, number>;

/** What {@link orpo} returns. */
export interface OrpoResult extends MetricRun<OrpoMetricName> {
  /** Tokenization of the train (and eval) rows. */
  data: { train: TokenizeReport & { pairs: number }; eval?: TokenizeReport & { pairs: number } };
}

/**
 * Trains `model` with ORPO on preference rows `{prompt?, chosen, rejected}` (the shipped
 * `dataset('preferences')`): no reference model, no separate SFT stage.
 *
 * @example
 * const r = await orpo(model, tokenizer, dataset('preferences'), { maxSteps: 50, evalRows: dataset('preferences', 'heldout') });
 * r.evalMetrics.at(-1)!.log_odds_chosen;
 */
export async function orpo(
  model: CausalLM, tokenizer: Tokenizer, rows: readonly PreferenceRow[], config: Partial<OrpoConfig> = {},
  options: TrainerOptions<DpoBatch> & { onTrainer?: (t: Trainer<DpoBatch>) => void } = {},
): Promise<OrpoResult> {
  const c = withDefaults(orpoDefaults, config, 'orpo', trainConfigKeys) as OrpoConfig;
  checkBeta(c.beta);
  return trainPairMethod('orpo', model, tokenizer, rows, c, orpoMetricNames, pairBatchLoss((l) => orpoLoss(l, c.beta)), options);
}
