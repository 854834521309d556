/**
 * The frozen reference policy of the on-policy RL methods (PPO, GRPO, RLOO): a clone of the starting
 * weights, or, when the policy has active adapters, the policy itself with its adapters off (no second
 * copy). Only what needs a reference builds one, so β = 0 holds none.
 */
import type { CausalLM } from '../model/transformer';
import { peft } from '../peft/peft';
import { responseLogProbs } from './rollout';
import { weightBytes } from './online';

/**
 * A reference for `policy`, fixed at construction.
 *
 * @example
 * const ref = new ReferencePolicy(model);
 * const lp = ref.logProbs(promptIds, responseIds, 0.7);   // per-token log π_ref of each response
 * ref.dispose();
 */
export class ReferencePolicy {
  /** The clone, when the reference is not the adapter-disabled policy. */
  private readonly copy?: CausalLM;

  constructor(readonly policy: CausalLM) {
    // A clone copies base weights only: with adapters active, the base with adapters off is the reference.
    if (peft(policy).activeNames.length === 0) {
      this.copy = policy.clone();
      this.copy.setTrainable(() => true, false);
    }
  }

  /** The reference is the policy with its adapters off (holds no weights of its own). */
  get adapterDisabled(): boolean {
    return this.copy === undefined;
  }

  /** Bytes of weights the reference holds (0 when it is the adapter-disabled policy). */
  get bytes(): number {
    return this.copy ? weightBytes(this.copy.params.values()) : 0;
  }

  /** Per-token log-probs (of logits / temperature) of each response under the reference. */
  logProbs(prompts: readonly number[][], responses: readonly number[][], temperature: number): number[][] {
    return this.copy
      ? responseLogProbs(this.copy, prompts, responses, temperature)
      : peft(this.policy).withDisabledSync(() => responseLogProbs(this.policy, prompts, responses, temperature));
  }

  dispose(): void {
    this.copy?.dispose();
  }
}
