/**
 * PPO for language models (Schulman et al., arXiv 1707.06347; Ziegler et al., arXiv 1909.08593), with
 * TRL `PPOTrainer`'s semantics, names and defaults: sample responses, score them, shape per-token rewards
 * with a KL penalty against a frozen reference, estimate advantages with GAE, then several epochs of
 * clipped policy and value updates over minibatches.
 *
 * Differences from TRL, on purpose: the value head shares the policy's trunk (TRL ≤ 0.11's
 * `AutoModelForCausalLMWithValueHead`, not a separate critic model), the score lands on the last
 * response token and values cover response tokens only (Ziegler's layout; TRL adds the score one
 * position after and keeps one extra value), and generation stops at eos by default.
 */
import * as tf from '@tensorflow/tfjs';
import type { CausalLM } from '../model/transformer';
import { withGradientCheckpointing } from '../model/checkpoint';
import type { Tokenizer } from '../tokenizer/tokenizer';
import { AdamW } from '../train/optimizer';
import { learningRateAt, type ScheduleName } from '../train/schedule';
import type { EvalMetrics, StepMetrics } from '../train/trainer';
import { Rng } from '../util/rng';
import { Emitter } from '../util/events';
import { withDefaults } from '../util/options';
import { trackRun, type Stoppable } from '../train/interrupt';
import type { PpoRun } from '../viz/charts';
import { ScalarHead } from './heads';
import { gae, ppoPolicyLoss, ppoValueLoss, shapeRewards, whiten } from './advantages';
import { pack, sampleResponses, scatter } from './rollout';
import { tokenLogProbs } from './logprobs';
import { ReferencePolicy } from './reference';
import { clippedUpdate, PromptCycle, rolloutSeeds, weightBytes } from './online';
import type { RewardFunction } from './reward';

// ---------------------------------------------------------------------------------------------------
// Rewards
// ---------------------------------------------------------------------------------------------------

/** A reward as a plain function of the prompt and the decoded response (e.g. a verifiable checker). */
export type PpoRewardFunction = RewardFunction;

/** A reward model: scores a batch of texts at once (structurally, `RewardModel` fits). */
export interface PpoRewardModel {
  scoreTexts(items: { prompt: string; response: string }[]): number[] | Promise<number[]>;
  /** Its network, when it has one: counted in the memory report. */
  readonly model?: CausalLM;
}

/** What {@link ppo} takes as a reward. */
export type PpoReward = PpoRewardFunction | PpoRewardModel;

// ---------------------------------------------------------------------------------------------------
// Config
// ---------------------------------------------------------------------------------------------------

/** PPO knobs under TRL `PPOConfig` names in camelCase (TRL's default noted where ours differs). */
export interface PpoConfig {
  /** PPO steps (rollout + update rounds). TRL counts `total_episodes` instead; see {@link totalEpisodes}. */
  maxSteps: number;
  /** If set, `maxSteps = ⌈totalEpisodes / batchSize⌉` (TRL `total_episodes`). */
  totalEpisodes: number | null;
  /** Prompts (episodes) per PPO step (TRL: per_device_train_batch_size · grad accum · num_mini_batches). */
  batchSize: number;
  /** Minibatches each batch splits into per PPO epoch (TRL `num_mini_batches`: 1). */
  numMiniBatches: number;
  /** Passes over each batch (TRL `num_ppo_epochs`: 4). */
  numPpoEpochs: number;
  /** Tokens sampled per response (TRL `response_length`: 53; short here, the base's context is 128). */
  responseLength: number;
  /** Sampling temperature; log-probs are of logits / temperature, as TRL (TRL: 0.7). */
  temperature: number;
  /** Top-k filter when sampling (0 = off; TRL samples without). Log-probs ignore the filter, as TRL's. */
  topK: number;
  /** Top-p filter when sampling (1 = off). */
  topP: number;
  /** `'eos'`: stop at the tokenizer's eos; a number: that token id; null: never stop early (TRL `stop_token`: None). */
  stopToken: 'eos' | number | null;
  /** Subtracted from the score of responses without the stop token (TRL `missing_eos_penalty`: None). */
  missingEosPenalty: number | null;
  /** β of the per-token KL penalty −β·(log π − log π_ref) (TRL `kl_coef`: 0.05). */
  klCoef: number;
  /** Per-token KL estimator: k1 = log r, k3 = (r − 1) − log r with r = π_ref/π (TRL `kl_estimator`: k1). */
  klEstimator: 'k1' | 'k3';
  /** Policy ratio clip ε (TRL `cliprange`: 0.2). */
  cliprange: number;
  /** Value clip around the rollout values (TRL `cliprange_value`: 0.2). */
  cliprangeValue: number;
  /** Weight of the value loss (TRL `vf_coef`: 0.1). */
  vfCoef: number;
  /** Discount (TRL `gamma`: 1.0). */
  gamma: number;
  /** GAE λ (TRL `lam`: 0.95). */
  lam: number;
  /** Whiten per-token rewards over the batch, mean kept (TRL `whiten_rewards`: false). */
  whitenRewards: boolean;
  /** Whiten advantages over the batch (TRL always does). */
  whitenAdvantages: boolean;
  /**
   * Standardise scores over each batch before shaping (not in TRL; Ziegler et al. normalise the reward
   * model once). Off by default.
   */
  normalizeScores: boolean;
  /**
   * Peak learning rate. 1e-4 instead of TRL's 3e-6: TRL's is tuned for 1B-parameter models, and the
   * 1M-param shipped base does not move at 3e-6 within tens of steps. Measured on the sentiment task
   * (batch 16, 4 epochs): 1e-4 raises the mean score from ≈0.05 to ≈0.2–0.3 in 20 steps with a first-step
   * clip fraction ≈0.25 and KL ≈2 nats; 3e-4 gets there in ≈10 steps but clips half the first step's
   * tokens and reaches KL ≈8 by step 15 (fine for a quick demo, too greedy as a default).
   */
  lr: number;
  /** Learning-rate shape over PPO steps (TRL / HF: linear decay). */
  schedule: ScheduleName;
  warmupSteps: number;
  /** AdamW; ε 1e-5 as OpenAI's lm-human-preferences PPO (HF/TRL: 1e-8), which damps steps of rarely-seen tokens. */
  beta1: number;
  beta2: number;
  eps: number;
  weightDecay: number;
  /** Clip gradients to this global L2 norm (HF: 1.0; 0 = off). */
  maxGradNorm: number;
  /** Init std of the value head's weight: small, so early values do not swamp the reward signal. */
  valueHeadStd: number;
  /** Seed of prompt order, sampling and minibatch order. */
  seed: number;
  /** Rollouts per step kept in `samples` (TRL logs a table of generations). */
  logSamples: number;
  /**
   * Recompute each decoder block in the backward pass instead of keeping its activations (HF:
   * `gradient_checkpointing`, default false): lower peak memory, about one more forward per update.
   */
  gradientCheckpointing: boolean;
}

/** Defaults of {@link PpoConfig}. */
export const ppoDefaults: Readonly<PpoConfig> = Object.freeze({
  maxSteps: 20, totalEpisodes: null, batchSize: 16, numMiniBatches: 1, numPpoEpochs: 4, responseLength: 16,
  temperature: 0.7, topK: 0, topP: 1, stopToken: 'eos' as const, missingEosPenalty: null, klCoef: 0.05,
  klEstimator: 'k1' as const, cliprange: 0.2, cliprangeValue: 0.2, vfCoef: 0.1, gamma: 1, lam: 0.95,
  whitenRewards: false, whitenAdvantages: true, normalizeScores: false, lr: 1e-4, schedule: 'linear' as const,
  warmupSteps: 0, beta1: 0.9, beta2: 0.999, eps: 1e-5, weightDecay: 0, maxGradNorm: 1, valueHeadStd: 0.01,
  seed: 0, logSamples: 2, gradientCheckpointing: false,
});

function validate(c: PpoConfig): void {
  const check = (ok: boolean, key: keyof PpoConfig, rule: string) => {
    if (!ok) throw new Error(`PpoConfig.${key} ${rule} (got ${String(c[key])})`);
  };
  const posInt = (key: keyof PpoConfig) => check(Number.isInteger(c[key]) && (c[key] as number) >= 1, key, 'must be an integer ≥ 1');
  for (const k of ['batchSize', 'numMiniBatches', 'numPpoEpochs', 'responseLength'] as const) posInt(k);
  check(Number.isInteger(c.maxSteps) && c.maxSteps >= 0, 'maxSteps', 'must be a non-negative integer');
  check(c.batchSize % c.numMiniBatches === 0, 'numMiniBatches', `must divide batchSize ${c.batchSize}`);
  check(c.temperature > 0, 'temperature', 'must be > 0');
  check(c.lr > 0, 'lr', 'must be > 0');
  for (const k of ['klCoef', 'cliprange', 'cliprangeValue', 'vfCoef', 'maxGradNorm', 'weightDecay'] as const) check(c[k] >= 0, k, 'must be ≥ 0');
  check(c.gamma >= 0 && c.gamma <= 1, 'gamma', 'must be in [0, 1]');
  check(c.lam >= 0 && c.lam <= 1, 'lam', 'must be in [0, 1]');
  check(c.klEstimator === 'k1' || c.klEstimator === 'k3', 'klEstimator', 'must be k1 or k3');
}

// ---------------------------------------------------------------------------------------------------
// Trainer
// ---------------------------------------------------------------------------------------------------

/** Metrics of one PPO step: TRL's names, plus the fields of {@link StepMetrics} so progress bars and loss charts follow. */
export interface PpoStepMetrics extends StepMetrics {
  /** Mean over responses of Σ_t kl_t. */
  'objective/kl': number;
  /** Mean over responses of Σ_t −log π (TRL's sampled-token entropy proxy). */
  'objective/entropy': number;
  /** Mean over responses of Σ_t −β·kl_t. */
  'objective/non_score_reward': number;
  /** scores + non_score_reward. */
  'objective/rlhf_reward': number;
  /** Mean score (after the missing-eos penalty, before normalisation). */
  'objective/scores': number;
  'policy/approxkl_avg': number;
  'policy/clipfrac_avg': number;
  'loss/policy_avg': number;
  'loss/value_avg': number;
  'val/clipfrac_avg': number;
  /** Mean of the minibatches' mean ratios, and their variance. */
  'val/ratio': number;
  'val/ratio_var': number;
  /** Responses that ended in the stop token. */
  'val/num_eos_tokens': number;
  /** Episodes per second. */
  eps: number;
  /** Episodes (responses) so far. */
  episode: number;
}

/** One rollout kept for inspection. */
export interface PpoSample {
  step: number;
  prompt: string;
  response: string;
  score: number;
}

/** Bytes PPO holds besides activations. */
export interface PpoMemory {
  /** Policy weights (base + adapters), value head excluded. */
  policyBytes: number;
  /** The frozen reference: a clone's weights, or 0 when it is the policy's base with adapters off. */
  referenceBytes: number;
  valueHeadBytes: number;
  /** The reward model's weights, when the reward is an object with a `model`. */
  rewardModelBytes: number;
  /** AdamW moments (2 × trainable). */
  optimizerBytes: number;
  totalBytes: number;
}

/** What {@link PpoTrainer.train} and {@link ppo} return; fits `TrainResult` (progress views' 'end'). */
export interface PpoResult {
  steps: number;
  history: PpoStepMetrics[];
  evals: EvalMetrics[];
  stoppedEarly: boolean;
  /** Stopped by {@link PpoTrainer.stop} (a notebook interrupt) before `maxSteps`. */
  interrupted?: boolean;
  samples: PpoSample[];
  /** Reward (`objective/scores`) against KL per step: `ppoChart(result.run)`. */
  run: PpoRun;
  memory: PpoMemory;
}

/** Events of a {@link PpoTrainer} (the shape of the Trainer's, so `progress(trainer)` works). */
export interface PpoEvents {
  step: PpoStepMetrics;
  eval: EvalMetrics;
  checkpoint: { step: number; path: string };
  end: PpoResult;
}

/**
 * PPO on a causal LM: the policy is `model` plus a value head on its hidden states; the reference is a
 * frozen clone, or the same model with its adapters off when it has active adapters (no second copy).
 *
 * @example
 * const trainer = new PpoTrainer(model, tok, prompts, (p, r) => sentimentScore(r), { maxSteps: 30 });
 * progress(trainer);
 * const { history } = await trainer.train();
 * trainer.dispose();
 */
export class PpoTrainer implements Stoppable {
  readonly config: PpoConfig;
  readonly valueHead: ScalarHead;
  readonly optimizer: AdamW;
  /** PPO steps done. */
  step = 0;
  episode = 0;
  readonly history: PpoStepMetrics[] = [];
  readonly evals: EvalMetrics[] = [];
  readonly samples: PpoSample[] = [];
  private readonly reference: ReferencePolicy;
  private readonly stopTokenId: number | null;
  private readonly cycle: PromptCycle;
  private readonly rng: Rng;
  private tokens = 0;
  private readonly events = new Emitter<PpoEvents>();
  /** Set by {@link stop}; cleared when `train()` returns. */
  stopRequested = false;

  /** Asks a running `train()` to stop after the current PPO step (result `interrupted: true`). */
  stop(): void {
    this.stopRequested = true;
  }

  constructor(readonly model: CausalLM, readonly tokenizer: Tokenizer, readonly prompts: readonly string[], readonly reward: PpoReward, config: Partial<PpoConfig> = {}) {
    const c: PpoConfig = withDefaults(ppoDefaults, config, 'ppo');
    if (c.totalEpisodes !== null && config.maxSteps === undefined) c.maxSteps = Math.ceil(c.totalEpisodes / c.batchSize);
    validate(c);
    this.config = c;
    if (prompts.length === 0) throw new Error('ppo: no prompts');
    // The value head alone would train while the policy stays put (KL 0 throughout): refuse, as Trainer does.
    if (model.trainableParams().size === 0) throw new Error('ppo: the policy has no trainable parameters (all frozen); call model.setTrainable(() => true, true) or add an adapter');
    this.stopTokenId = c.stopToken === 'eos' ? (tokenizer.specialTokens.eos?.id ?? null) : c.stopToken;
    if (c.stopToken === 'eos' && this.stopTokenId === null) throw new Error('ppo: stopToken "eos" but the tokenizer has no eos token');
    this.reference = new ReferencePolicy(model); // before the value head joins the model
    this.valueHead = new ScalarHead(model, 'value', { std: c.valueHeadStd, seed: c.seed });
    const { beta1, beta2, eps, weightDecay } = c;
    this.optimizer = new AdamW(model.trainableParams(), { beta1, beta2, eps, weightDecay });
    this.rng = new Rng(c.seed);
    this.cycle = new PromptCycle(prompts.length, this.rng); // the same rng later shuffles minibatches
  }

  /** Subscribes to an event; returns a function that unsubscribes. */
  on<E extends keyof PpoEvents>(event: E, listener: (e: PpoEvents[E]) => void): () => void {
    return this.events.on(event, listener);
  }

  private emit<E extends keyof PpoEvents>(event: E, payload: PpoEvents[E]): void {
    this.events.emit(event, payload);
  }

  /** Learning rate of the next step. */
  get lr(): number {
    const c = this.config;
    return learningRateAt(this.step, { lr: c.lr, schedule: c.schedule, warmupSteps: c.warmupSteps, totalSteps: c.maxSteps, minLrRatio: 0 });
  }

  /** Weights PPO holds (see {@link PpoMemory}). */
  memory(): PpoMemory {
    const head = weightBytes([{ variable: this.valueHead.weight }, { variable: this.valueHead.bias }]);
    const policyBytes = weightBytes(this.model.params.values()) + weightBytes(this.model.adapterParams.values()) - head;
    const referenceBytes = this.reference.bytes;
    const rm = typeof this.reward === 'function' ? undefined : this.reward.model;
    const rewardModelBytes = rm ? weightBytes(rm.params.values()) + weightBytes(rm.adapterParams.values()) : 0;
    const optimizerBytes = 2 * [...this.model.trainableParams().values()].reduce((s, v) => s + v.size * 4, 0);
    return { policyBytes, referenceBytes, valueHeadBytes: head, rewardModelBytes, optimizerBytes, totalBytes: policyBytes + referenceBytes + head + rewardModelBytes + optimizerBytes };
  }

  private async score(prompts: string[], responses: string[]): Promise<number[]> {
    const r = this.reward;
    if (typeof r === 'function') return prompts.map((p, i) => r(p, responses[i]));
    const s = await r.scoreTexts(prompts.map((prompt, i) => ({ prompt, response: responses[i] })));
    if (s.length !== prompts.length) throw new Error(`ppo: reward model returned ${s.length} scores for ${prompts.length} responses`);
    return s;
  }

  /** One PPO step: rollout, score, shape rewards, GAE, then `numPpoEpochs` × `numMiniBatches` updates. */
  async trainStep(): Promise<PpoStepMetrics> {
    const c = this.config;
    const started = Date.now();
    const lr = this.lr;
    const picked = this.cycle.next(c.batchSize);
    const promptText = picked.map((i) => this.prompts[i]);
    // Prompts keep their last tokens so prompt + response fits the window (prefix / virtual tokens included).
    const room = this.model.config.contextLength - this.model.reservedPositions() - c.responseLength;
    if (room < 1) throw new Error(`ppo: responseLength ${c.responseLength} leaves no room for a prompt in contextLength ${this.model.config.contextLength}`);
    const promptIds = promptText.map((p, i) => {
      const ids = this.tokenizer.encode(p);
      if (ids.length === 0) throw new Error(`ppo: prompt ${picked[i]} encodes to no tokens`);
      return ids.slice(-room);
    });
    const seeds = rolloutSeeds(c.seed, this.step, picked.length);
    // 1. Rollout with the cache: tokens, log π_old and V_old from the same pass.
    const roll = sampleResponses(this.model, promptIds, {
      maxNewTokens: c.responseLength, temperature: c.temperature, topK: c.topK, topP: c.topP, stopTokenId: this.stopTokenId, seeds, valueHead: this.valueHead,
    });
    const refLogprobs = this.reference.logProbs(promptIds, roll.responseIds, c.temperature);
    // 2. Scores on the decoded response (stop token dropped).
    const responseText = roll.responseIds.map((ids) => this.tokenizer.decode(ids.filter((t) => t !== this.stopTokenId), { skipSpecialTokens: true }));
    const hasEos = roll.responseIds.map((ids) => ids.at(-1) === this.stopTokenId);
    let scores = await this.score(promptText, responseText);
    if (c.missingEosPenalty !== null) scores = scores.map((s, i) => (hasEos[i] ? s : s - c.missingEosPenalty!));
    const shapedScores = c.normalizeScores ? whiten(scores) : scores;
    // 3. Per-token rewards, GAE, whitening (over every response token of the batch, as TRL's masked ops).
    const shaped = roll.logprobs.map((lp, i) => shapeRewards(lp, refLogprobs[i], shapedScores[i], c.klCoef, c.klEstimator));
    let rewards = shaped.map((s) => s.rewards);
    if (c.whitenRewards) rewards = regroup(whiten(rewards.flat(), false), rewards);
    const g = rewards.map((r, i) => gae(r, roll.values[i], c.gamma, c.lam));
    const returns = g.map((x) => x.returns);
    let advantages = g.map((x) => x.advantages);
    if (c.whitenAdvantages) advantages = regroup(whiten(advantages.flat()), advantages);
    // 4. PPO epochs over minibatches.
    const stats = { pg: [] as number[], vf: [] as number[], clip: [] as number[], vclip: [] as number[], kl: [] as number[], ratio: [] as number[], loss: [] as number[], norm: [] as number[] };
    const mb = c.batchSize / c.numMiniBatches;
    const params = this.model.trainableParams();
    const vars = [...params.values()];
    for (let epoch = 0; epoch < c.numPpoEpochs; epoch++) {
      const perm = this.rng.shuffle(picked.map((_, i) => i));
      for (let start = 0; start < perm.length; start += mb) {
        const idx = perm.slice(start, start + mb);
        const p = pack(idx.map((i) => promptIds[i]), idx.map((i) => roll.responseIds[i]));
        const old = scatter(p, idx.map((i) => roll.logprobs[i]));
        const oldV = scatter(p, idx.map((i) => roll.values[i]));
        const adv = scatter(p, idx.map((i) => advantages[i]));
        const ret = scatter(p, idx.map((i) => returns[i]));
        let kept: tf.Scalar[] = [];
        const { value, grads } = withGradientCheckpointing(this.model, c.gradientCheckpointing, () => tf.variableGrads(() => {
          const h = this.model.hidden(p.ids);
          const lp = tokenLogProbs(tf.div(this.model.head(h), c.temperature) as tf.Tensor3D, p.targets);
          const pg = ppoPolicyLoss(lp, old, adv, p.mask, c.cliprange);
          const vf = ppoValueLoss(this.valueHead.apply(h), oldV, ret, p.mask, c.cliprangeValue);
          kept = [pg.loss, vf.loss, pg.clipfrac, vf.clipfrac, pg.approxkl, pg.ratio].map((t) => tf.keep(t));
          return tf.add(pg.loss, tf.mul(vf.loss, c.vfCoef)) as tf.Scalar;
        }, vars));
        const norm = await clippedUpdate(this.optimizer, params, grads, { lr, maxGradNorm: c.maxGradNorm, what: 'ppo', step: this.step + 1 });
        const [pgL, vfL, cf, vcf, ak, ra] = kept.map((t) => t.dataSync()[0]);
        stats.loss.push(value.dataSync()[0]);
        stats.pg.push(pgL); stats.vf.push(vfL); stats.clip.push(cf); stats.vclip.push(vcf); stats.kl.push(ak); stats.ratio.push(ra); stats.norm.push(norm);
        tf.dispose([value, ...kept, p.ids, p.targets, p.mask, old, oldV, adv, ret]);
      }
    }
    this.step++;
    this.episode += picked.length;
    const newTokens = roll.responseIds.reduce((s, r) => s + r.length, 0);
    this.tokens += newTokens;
    const klSum = shaped.map((s) => sum(s.kl));
    const nonScore = mean(klSum) * -c.klCoef;
    const elapsedMs = (this.history.at(-1)?.elapsedMs ?? 0) + (Date.now() - started);
    const meanLoss = mean(stats.loss);
    const m: PpoStepMetrics = {
      step: this.step, loss: meanLoss, lr, gradNorm: mean(stats.norm), tokens: this.tokens,
      tokensPerSec: (this.tokens * 1000) / Math.max(1, elapsedMs), elapsedMs, etaMs: (elapsedMs / this.step) * (c.maxSteps - this.step),
      'objective/kl': mean(klSum), 'objective/entropy': mean(roll.logprobs.map((l) => -sum(l))),
      'objective/non_score_reward': nonScore, 'objective/rlhf_reward': nonScore + mean(scores), 'objective/scores': mean(scores),
      'policy/approxkl_avg': mean(stats.kl), 'policy/clipfrac_avg': mean(stats.clip), 'loss/policy_avg': mean(stats.pg),
      'loss/value_avg': mean(stats.vf), 'val/clipfrac_avg': mean(stats.vclip), 'val/ratio': mean(stats.ratio),
      'val/ratio_var': variance(stats.ratio), 'val/num_eos_tokens': hasEos.filter(Boolean).length,
      eps: (this.episode * 1000) / Math.max(1, elapsedMs), episode: this.episode,
    };
    for (let i = 0; i < Math.min(c.logSamples, picked.length); i++) this.samples.push({ step: this.step, prompt: promptText[i], response: responseText[i], score: scores[i] });
    return m;
  }

  /** Runs until `maxSteps`, emitting 'step' after each and 'end' with the result. */
  async train(): Promise<PpoResult> {
    const untrack = trackRun(this); // a notebook interrupt (requestStop) ends the loop at a step boundary
    try {
      while (this.step < this.config.maxSteps && !this.stopRequested) {
        const m = await this.trainStep();
        this.history.push(m);
        this.emit('step', m);
        await new Promise((r) => setImmediate(r)); // let notebook displays repaint
      }
    } finally {
      untrack();
    }
    const interrupted = this.stopRequested && this.step < this.config.maxSteps;
    this.stopRequested = false;
    const result: PpoResult = {
      steps: this.step, history: this.history, evals: this.evals, stoppedEarly: false, interrupted, samples: this.samples,
      run: { step: this.history.map((m) => m.step), reward: this.history.map((m) => m['objective/scores']), kl: this.history.map((m) => m['objective/kl']) },
      memory: this.memory(),
    };
    this.emit('end', result);
    return result;
  }

  /** Frees the optimizer, the reference clone and the value head (the policy stays). */
  dispose(): void {
    this.optimizer.dispose();
    this.reference.dispose();
    this.valueHead.dispose();
  }
}

const sum = (xs: readonly number[]) => xs.reduce((a, b) => a + b, 0);
const mean = (xs: readonly number[]) => (xs.length ? sum(xs) / xs.length : 0);
const variance = (xs: readonly number[]) => {
  const m = mean(xs);
  return xs.length > 1 ? xs.reduce((a, b) => a + (b - m) ** 2, 0) / (xs.length - 1) : 0;
};

/** Splits a flat list back into rows shaped like `like`. */
function regroup(flat: readonly number[], like: readonly number[][]): number[][] {
  let k = 0;
  return like.map((row) => row.map(() => flat[k++]));
}

/**
 * Runs PPO on `model` (updated in place) and frees what it added (value head, reference, optimizer).
 *
 * @example
 * const { model, tokenizer } = await base('tiny-llama');
 * const prompts = sentimentPrompts(64, 1);
 * const result = await ppo(model, tokenizer, prompts, (p, r) => sentimentScore(r), { maxSteps: 30 });
 * ppoChart(result.run).show();
 */
export async function ppo(model: CausalLM, tokenizer: Tokenizer, prompts: readonly string[], reward: PpoReward, config: Partial<PpoConfig> = {},
  options: { onTrainer?: (t: PpoTrainer) => void } = {}): Promise<PpoResult> {
  const trainer = new PpoTrainer(model, tokenizer, prompts, reward, config);
  options.onTrainer?.(trainer);
  try {
    return await trainer.train();
  } finally {
    trainer.dispose();
  }
}
