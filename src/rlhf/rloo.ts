/**
 * RLOO, REINFORCE Leave-One-Out (Ahmadian et al., "Back to Basics", arXiv 2402.14740; Kool et al. 2019):
 * k completions per prompt, each one's baseline the mean reward of the other k − 1, no value model. It
 * runs through GRPO's loop ({@link GrpoTrainer}) with `baseline: 'leave-one-out'` and rewards left
 * unscaled; what differs is only the advantage.
 */
import type { CausalLM } from '../model/transformer';
import type { Tokenizer } from '../tokenizer/tokenizer';
import { grpoDefaults, GrpoTrainer, runGroupTrainer, type GrpoConfig, type GrpoResult, type GrpoReward } from './grpo';

/**
 * RLOO's defaults: GRPO's, with the leave-one-out baseline, no std scaling (TRL `RLOOConfig`
 * `normalize_advantages`: false), the loss averaged over each completion's tokens and then over
 * completions (`lossType: 'grpo'`), and k = `numGenerations` = 4 (the paper's k = 4 runs).
 */
export const rlooDefaults: Readonly<GrpoConfig> = Object.freeze({
  ...grpoDefaults, baseline: 'leave-one-out' as const, scaleRewards: 'none' as const, lossType: 'grpo' as const, numGenerations: 4,
});

/**
 * Runs RLOO on `model` (updated in place); the same options as {@link grpo}.
 *
 * @example
 * const task = largestDigitTask();
 * const r = await rloo(model, tokenizer, task.prompts('train'), task.reward, { maxSteps: 30 });
 */
export async function rloo(model: CausalLM, tokenizer: Tokenizer, prompts: readonly string[], reward: GrpoReward | readonly GrpoReward[],
  config: Partial<GrpoConfig> = {}, options: { onTrainer?: (t: GrpoTrainer) => void } = {}): Promise<GrpoResult> {
  return runGroupTrainer(new GrpoTrainer(model, tokenizer, prompts, reward, config, 'rloo', rlooDefaults), options);
}
