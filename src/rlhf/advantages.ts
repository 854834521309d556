/**
 * PPO's arithmetic, as pure functions (exported for tests and for readers): KL-shaped per-token rewards,
 * generalised advantage estimation, whitening, and the clipped policy and value losses; and the group
 * advantages of GRPO and RLOO.
 */
import * as tf from '@tensorflow/tfjs';

/**
 * Generalised advantage estimation (Schulman et al., arXiv 1506.02438) over one response:
 * δ_t = r_t + γ·V_{t+1} − V_t (V after the last token = 0), A_t = δ_t + γλ·A_{t+1}, returns = A + V.
 *
 * @example
 * gae([0, 0, 1], [0.1, 0.2, 0.3], 1, 0.95).advantages; // [δ0 + .95δ1 + .95²δ2, …]
 */
export function gae(rewards: readonly number[], values: readonly number[], gamma = 1, lam = 0.95): { advantages: number[]; returns: number[] } {
  if (rewards.length !== values.length) throw new Error(`gae: ${rewards.length} rewards but ${values.length} values`);
  const n = rewards.length;
  const advantages = new Array<number>(n);
  let last = 0;
  for (let t = n - 1; t >= 0; t--) {
    const next = t + 1 < n ? values[t + 1] : 0;
    last = rewards[t] + gamma * next - values[t] + gamma * lam * last;
    advantages[t] = last;
  }
  return { advantages, returns: advantages.map((a, t) => a + values[t]) };
}

/**
 * TRL's `masked_whiten` over a flat list: (x − mean)/√(var + 1e-8) with the unbiased variance;
 * `shiftMean` false adds the mean back (used for rewards, whose sign matters).
 */
export function whiten(xs: readonly number[], shiftMean = true): number[] {
  const n = xs.length;
  if (n === 0) return [];
  const mean = xs.reduce((a, b) => a + b, 0) / n;
  const variance = n > 1 ? xs.reduce((a, b) => a + (b - mean) ** 2, 0) / (n - 1) : 0;
  const inv = 1 / Math.sqrt(variance + 1e-8);
  return xs.map((x) => (x - mean) * inv + (shiftMean ? 0 : mean));
}

/**
 * Per-token rewards of one response: −β·kl_t everywhere, plus the score on the last token.
 * kl_t = log π − log π_ref (k1) or (r − 1) − log r with r = π_ref/π (k3, Schulman's low-variance estimator).
 */
export function shapeRewards(logprobs: readonly number[], refLogprobs: readonly number[], score: number, klCoef: number, estimator: 'k1' | 'k3' = 'k1'): { rewards: number[]; kl: number[] } {
  const kl = logprobs.map((lp, t) => {
    const logr = refLogprobs[t] - lp;
    return estimator === 'k1' ? -logr : Math.exp(logr) - 1 - logr;
  });
  const rewards = kl.map((k) => -klCoef * k);
  if (rewards.length > 0) rewards[rewards.length - 1] += score;
  return { rewards, kl };
}

/** How rewards become advantages within each group of completions of one prompt (GRPO, RLOO). */
export interface GroupAdvantageOptions {
  /**
   * Baseline subtracted from each reward: the group mean (GRPO, arXiv 2402.03300) or the mean of the
   * other G − 1 rewards of the group (RLOO, arXiv 2402.14740: r_i − (Σ_j r_j − r_i)/(G − 1)).
   */
  baseline: 'mean' | 'leave-one-out';
  /**
   * Divide by the rewards' std (unbiased): of the group (`'group'`, TRL's default), of the whole batch
   * (`'batch'`), or not at all (`'none'`: Dr. GRPO, arXiv 2503.20783 §3.1, which shows the per-group std
   * over-weights questions that are nearly always or never solved).
   */
  scaleRewards: 'group' | 'batch' | 'none';
}

/** Per-group mean and std (unbiased) of rewards laid out group by group (G consecutive per prompt). */
export function groupStats(rewards: readonly number[], groupSize: number): { mean: number[]; std: number[] } {
  if (!(Number.isInteger(groupSize) && groupSize >= 1)) throw new Error(`groupStats: groupSize must be an integer ≥ 1 (got ${groupSize})`);
  if (rewards.length % groupSize !== 0) throw new Error(`groupStats: ${rewards.length} rewards do not split into groups of ${groupSize}`);
  const mean: number[] = [];
  const std: number[] = [];
  for (let g = 0; g < rewards.length; g += groupSize) {
    const xs = rewards.slice(g, g + groupSize);
    const m = xs.reduce((a, b) => a + b, 0) / groupSize;
    mean.push(m);
    std.push(groupSize > 1 ? Math.sqrt(xs.reduce((a, b) => a + (b - m) ** 2, 0) / (groupSize - 1)) : 0);
  }
  return { mean, std };
}

/**
 * One advantage per completion, from rewards laid out group by group (G consecutive per prompt):
 * (r − baseline) / (std + 1e-4) with TRL's 1e-4, or r − baseline when `scaleRewards` is 'none'.
 *
 * @example
 * groupAdvantages([1, 0, 0, 1], 2, { baseline: 'mean', scaleRewards: 'none' });          // [0.5, -0.5, -0.5, 0.5]
 * groupAdvantages([1, 0, 0], 3, { baseline: 'leave-one-out', scaleRewards: 'none' });    // [1, -0.5, -0.5]
 */
export function groupAdvantages(rewards: readonly number[], groupSize: number, o: GroupAdvantageOptions): number[] {
  const { mean, std } = groupStats(rewards, groupSize);
  if (o.baseline === 'leave-one-out' && groupSize < 2) throw new Error('groupAdvantages: the leave-one-out baseline needs groups of at least 2 completions');
  const batchStd = o.scaleRewards === 'batch' ? groupStats(rewards, rewards.length).std[0] : 0;
  return rewards.map((r, i) => {
    const g = Math.floor(i / groupSize);
    // r − mean of the others = G/(G − 1)·(r − group mean).
    const centred = o.baseline === 'mean' ? r - mean[g] : (groupSize / (groupSize - 1)) * (r - mean[g]);
    if (o.scaleRewards === 'none') return centred;
    return centred / ((o.scaleRewards === 'group' ? std[g] : batchStd) + 1e-4);
  });
}

/** Σ mask·x / max(Σ mask, 1): a mean over the masked (response) positions. */
export function maskedMean(x: tf.Tensor, mask: tf.Tensor): tf.Scalar {
  return tf.div(tf.sum(tf.mul(x, mask)), tf.maximum(tf.sum(mask), 1)) as tf.Scalar;
}

/** Clipped surrogate (PPO eq. 7) as a loss, with its diagnostics. All inputs (B, T); mask marks response tokens. */
export function ppoPolicyLoss(newLogprobs: tf.Tensor, oldLogprobs: tf.Tensor, advantages: tf.Tensor, mask: tf.Tensor, cliprange: number): { loss: tf.Scalar; clipfrac: tf.Scalar; approxkl: tf.Scalar; ratio: tf.Scalar } {
  return tf.tidy(() => {
    const diff = tf.mul(tf.sub(newLogprobs, oldLogprobs), mask); // padding's diff is 0, so ratio 1 there
    const ratio = tf.exp(diff);
    const l1 = tf.mul(tf.neg(advantages), ratio);
    const l2 = tf.mul(tf.neg(advantages), tf.clipByValue(ratio, 1 - cliprange, 1 + cliprange));
    return {
      loss: maskedMean(tf.maximum(l1, l2), mask),
      clipfrac: maskedMean(tf.cast(tf.greater(l2, l1), 'float32'), mask),
      // TRL: 0.5·mean(diff²) (over all positions of the minibatch; here over response tokens).
      approxkl: tf.mul(0.5, maskedMean(tf.square(diff), mask)) as tf.Scalar,
      ratio: maskedMean(ratio, mask),
    };
  });
}

/** Clipped value loss ½·max((V − R)², (clip(V, V_old ± ε) − R)²), masked mean, and how often the clip won. */
export function ppoValueLoss(values: tf.Tensor, oldValues: tf.Tensor, returns: tf.Tensor, mask: tf.Tensor, cliprangeValue: number): { loss: tf.Scalar; clipfrac: tf.Scalar } {
  return tf.tidy(() => {
    const clipped = tf.clipByValue(tf.sub(values, oldValues), -cliprangeValue, cliprangeValue).add(oldValues);
    const l1 = tf.square(tf.sub(values, returns));
    const l2 = tf.square(tf.sub(clipped, returns));
    return { loss: tf.mul(0.5, maskedMean(tf.maximum(l1, l2), mask)) as tf.Scalar, clipfrac: maskedMean(tf.cast(tf.greater(l2, l1), 'float32'), mask) };
  });
}
