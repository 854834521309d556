/**
 * The reward–KL frontier (Rafailov et al., DPO, arXiv 2305.18290, Fig. 2 left): how much reward a policy
 * earns against how far it moved from the reference, both measured on responses sampled from the policy.
 * One function gives one point for any policy (a PPO checkpoint, a DPO run at some β, the base itself),
 * so methods are compared with the same estimator on the same held-out prompts.
 */
import type { CausalLM } from '../model/transformer';
import type { Tokenizer } from '../tokenizer/tokenizer';
import type { PpoRun } from '../viz/charts';
import { peft } from '../peft/peft';
import { responseLogProbs, sampleResponses } from './rollout';
import type { PpoReward } from './ppo';
import { withDefaults } from '../util/options';

/** Options of {@link policyRewardKl}. */
export interface RewardKlOptions {
  /** Responses sampled per prompt. */
  samplesPerPrompt: number;
  /** Tokens sampled per response (at most; sampling stops at the stop token). */
  responseLength: number;
  /** Sampling temperature; both log-probs are of logits / temperature, the distribution actually sampled (as PPO's KL). */
  temperature: number;
  /** Seed of the samplers: response j of prompt i always gets the same sampler seed. */
  seed: number;
  /** `'eos'`: stop at the tokenizer's eos; a number: that token id; null: always `responseLength` tokens. */
  stopToken: 'eos' | number | null;
  /** Rows per log-prob forward pass (bounds the (rows, T, vocab) logits tensor). */
  batchSize: number;
}

/** Defaults of {@link RewardKlOptions}: PPO's rollout settings, so the points sit on PPO's own KL scale. */
export const rewardKlDefaults: Readonly<RewardKlOptions> = Object.freeze({
  samplesPerPrompt: 4, responseLength: 16, temperature: 0.7, seed: 0, stopToken: 'eos' as const, batchSize: 32,
});

/** One sampled response with its reward and sequence log-probs. */
export interface RewardKlSample {
  prompt: string;
  /** Decoded response, stop token dropped (what the reward saw). */
  response: string;
  responseIds: number[];
  reward: number;
  /** Σ_t log π(y_t | x, y_<t), of logits / temperature. */
  logprob: number;
  /** The same sum under the reference. */
  refLogprob: number;
  /** logprob − refLogprob: the single-sample estimate of KL(π ‖ π_ref) for this prompt. */
  kl: number;
}

/** A point of the frontier: means over every sample, with their standard errors. */
export interface RewardKlPoint {
  reward: number;
  kl: number;
  /** Standard error of the mean reward / KL (sample std / √n): the sampling noise of the point. */
  rewardStderr: number;
  klStderr: number;
  samples: RewardKlSample[];
}

/**
 * Sequence log-probs of given responses under a policy and a reference, row by row: Σ_t log π(y_t) and
 * Σ_t log π_ref(y_t) (logits / temperature). Both go through the same batched forward pass, so a
 * reference with the policy's weights gives a KL of exactly 0.
 *
 * @example
 * const { kl } = sequenceKl(policy, base, [tok.encode('The nation')], [[412, 9]], 0.7);
 */
export function sequenceKl(
  policy: CausalLM, reference: CausalLM | 'adapter-disabled', prompts: readonly number[][], responses: readonly number[][], temperature: number, batchSize = rewardKlDefaults.batchSize,
): { logprob: number[]; refLogprob: number[]; kl: number[] } {
  if (prompts.length !== responses.length) throw new Error(`sequenceKl: ${prompts.length} prompts but ${responses.length} responses`);
  const sums = (model: CausalLM) => {
    const out: number[] = [];
    for (let i = 0; i < prompts.length; i += batchSize) {
      const rows = responseLogProbs(model, prompts.slice(i, i + batchSize), responses.slice(i, i + batchSize), temperature);
      for (const r of rows) out.push(r.reduce((a, b) => a + b, 0));
    }
    return out;
  };
  const logprob = sums(policy);
  const refLogprob = reference === 'adapter-disabled' ? peft(policy).withDisabledSync(() => sums(policy)) : sums(reference);
  return { logprob, refLogprob, kl: logprob.map((l, i) => l - refLogprob[i]) };
}

/**
 * Mean reward and mean sequence-level KL(π ‖ π_ref) of `policy` on `prompts`: samples
 * `samplesPerPrompt` responses per prompt from the policy, scores them, and estimates the KL by
 * Σ_t (log π(y_t) − log π_ref(y_t)) averaged over the samples (unbiased, since y ~ π; a single sample
 * can be negative). The reference is a separate model, or `'adapter-disabled'`: the policy itself with
 * its adapters off. Deterministic for a seed; neither model is changed.
 *
 * @example
 * const { model: ref, tokenizer } = await base('tiny-llama');
 * const policy = ref.clone();
 * await ppo(policy, tokenizer, sentimentPrompts(64, 1), (p, r) => sentimentScore(r), { maxSteps: 30 });
 * const pt = await policyRewardKl(policy, ref, tokenizer, sentimentPrompts(32, 9), (p, r) => sentimentScore(r), { samplesPerPrompt: 4 });
 * console.log(pt.reward, pt.kl);
 */
export async function policyRewardKl(
  policy: CausalLM, reference: CausalLM | 'adapter-disabled', tokenizer: Tokenizer, prompts: readonly string[], reward: PpoReward,
  options: Partial<RewardKlOptions> = {},
): Promise<RewardKlPoint> {
  const o: RewardKlOptions = withDefaults(rewardKlDefaults, options, 'policyRewardKl');
  if (!(Number.isInteger(o.samplesPerPrompt) && o.samplesPerPrompt >= 1)) throw new Error(`policyRewardKl: samplesPerPrompt must be an integer ≥ 1 (got ${o.samplesPerPrompt})`);
  if (!(Number.isInteger(o.responseLength) && o.responseLength >= 1)) throw new Error(`policyRewardKl: responseLength must be an integer ≥ 1 (got ${o.responseLength})`);
  if (!(o.temperature > 0)) throw new Error(`policyRewardKl: temperature must be > 0 (got ${o.temperature})`);
  if (prompts.length === 0) throw new Error('policyRewardKl: no prompts');
  if (reference === 'adapter-disabled' && peft(policy).activeNames.length === 0) {
    throw new Error("policyRewardKl: reference 'adapter-disabled' needs active adapters (the KL would be 0 by construction)");
  }
  const stop = o.stopToken === 'eos' ? (tokenizer.specialTokens.eos?.id ?? null) : o.stopToken;
  if (o.stopToken === 'eos' && stop === null) throw new Error('policyRewardKl: stopToken "eos" but the tokenizer has no eos token');
  // Prompts keep their last tokens so prompt + response fits the window, as PPO's rollouts.
  const room = policy.config.contextLength - policy.reservedPositions() - o.responseLength;
  if (room < 1) throw new Error(`policyRewardKl: responseLength ${o.responseLength} leaves no room for a prompt`);
  const k = o.samplesPerPrompt;
  const texts = prompts.flatMap((p) => Array.from({ length: k }, () => p));
  const ids = prompts.flatMap((p, i) => {
    const e = tokenizer.encode(p).slice(-room);
    if (e.length === 0) throw new Error(`policyRewardKl: prompt ${i} encodes to no tokens`);
    return Array.from({ length: k }, () => e);
  });
  // Per-row sampler seeds (sampleResponses seeds each row alone), so a sample does not depend on batching.
  const seeds = ids.map((_, r) => (o.seed * 1000003 + Math.floor(r / k) * 7919 + (r % k) * 104729) % 2147483647);
  const roll = sampleResponses(policy, ids, { maxNewTokens: o.responseLength, temperature: o.temperature, stopTokenId: stop, seeds });
  // Log-probs by a fresh full pass for both models (not the rollout's cached ones): same code path, so an
  // identical reference cancels exactly instead of to float noise between the cached and full passes.
  const { logprob, refLogprob, kl } = sequenceKl(policy, reference, ids, roll.responseIds, o.temperature, o.batchSize);
  const responses = roll.responseIds.map((r) => tokenizer.decode(r.filter((t) => t !== stop), { skipSpecialTokens: true }));
  let rewards: number[];
  if (typeof reward === 'function') rewards = texts.map((p, i) => reward(p, responses[i]));
  else {
    rewards = await reward.scoreTexts(texts.map((prompt, i) => ({ prompt, response: responses[i] })));
    if (rewards.length !== texts.length) throw new Error(`policyRewardKl: reward model returned ${rewards.length} scores for ${texts.length} responses`);
  }
  const samples: RewardKlSample[] = texts.map((prompt, i) => ({
    prompt, response: responses[i], responseIds: roll.responseIds[i], reward: rewards[i], logprob: logprob[i], refLogprob: refLogprob[i], kl: kl[i],
  }));
  return { reward: mean(rewards), kl: mean(kl), rewardStderr: stderr(rewards), klStderr: stderr(kl), samples };
}

/**
 * Frontier points as a {@link PpoRun}, so `ppoChart` draws PPO checkpoints and a DPO β sweep together.
 *
 * @example
 * ppoChart([frontierRun('PPO', ppoPoints), frontierRun('DPO', dpoPoints)]).show();
 */
export function frontierRun(name: string, points: readonly { reward: number; kl: number; step?: number }[]): PpoRun {
  return { name, reward: points.map((p) => p.reward), kl: points.map((p) => p.kl), step: points.map((p, i) => p.step ?? i) };
}

const mean = (xs: readonly number[]) => (xs.length ? xs.reduce((a, b) => a + b, 0) / xs.length : 0);
function stderr(xs: readonly number[]): number {
  if (xs.length < 2) return 0;
  const m = mean(xs);
  return Math.sqrt(xs.reduce((a, b) => a + (b - m) ** 2, 0) / (xs.length - 1) / xs.length);
}
