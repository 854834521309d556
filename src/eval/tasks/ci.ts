/**
 * Confidence intervals of task scores.
 *
 * - Proportions (acc, acc_norm, exact_match, contains): the Wilson score interval. It is closed-form (no
 *   seed), stays inside [0, 1] and keeps close to its nominal coverage for the small document counts and
 *   the scores near 0 or 1 that small models on small tasks give, where the normal ("Wald") interval
 *   collapses to a point (Brown, Cai & DasGupta 2001, "Interval Estimation for a Binomial Proportion").
 * - Corpus-level ratios (perplexity, word/byte perplexity, bits per byte): a seeded percentile bootstrap
 *   over documents, since they have no simple closed form (lm-eval bootstraps its non-mean metrics too).
 */
import { quantile } from '../../util/linalg';
import { Rng } from '../../util/rng';

/** A score's interval. */
export interface Interval {
  low: number;
  high: number;
}

/**
 * The two-sided normal quantile z for a confidence level (0.95 → 1.959964): Φ⁻¹((1 + confidence) / 2) by
 * Acklam's rational approximation (relative error < 1.2e-9).
 *
 * @example
 * normalQuantile(0.95); // 1.959964
 */
export function normalQuantile(confidence: number): number {
  checkConfidence(confidence);
  const p = 0.5 + confidence / 2; // in (0.5, 1)
  const a = [-3.969683028665376e1, 2.209460984245205e2, -2.759285104469687e2, 1.38357751867269e2, -3.066479806614716e1, 2.506628277459239];
  const b = [-5.447609879822406e1, 1.615858368580409e2, -1.556989798598866e2, 6.680131188771972e1, -1.328068155288572e1];
  const c = [-7.784894002430293e-3, -3.223964580411365e-1, -2.400758277161838, -2.549732539343734, 4.374664141464968, 2.938163982698783];
  const d = [7.784695709041462e-3, 3.224671290700398e-1, 2.445134137142996, 3.754408661907416];
  if (p <= 1 - 0.02425) {
    const q = p - 0.5;
    const r = q * q;
    return ((((((a[0] * r + a[1]) * r + a[2]) * r + a[3]) * r + a[4]) * r + a[5]) * q) / (((((b[0] * r + b[1]) * r + b[2]) * r + b[3]) * r + b[4]) * r + 1);
  }
  const q = Math.sqrt(-2 * Math.log(1 - p));
  return -(((((c[0] * q + c[1]) * q + c[2]) * q + c[3]) * q + c[4]) * q + c[5]) / ((((d[0] * q + d[1]) * q + d[2]) * q + d[3]) * q + 1);
}

function checkConfidence(c: number): void {
  if (!(c > 0 && c < 1)) throw new Error(`confidence must be in (0, 1) (got ${c})`);
}

/**
 * Wilson score interval of `successes` out of `n`: (p̂ + z²/2n ± z·√(p̂(1−p̂)/n + z²/4n²)) / (1 + z²/n).
 *
 * @example
 * wilsonInterval(8, 10); // { low: 0.490, high: 0.943 }
 */
export function wilsonInterval(successes: number, n: number, confidence = 0.95): Interval {
  if (!Number.isInteger(n) || n < 0 || !Number.isInteger(successes) || successes < 0 || successes > n) {
    throw new Error(`wilsonInterval: need integers 0 ≤ successes ≤ n (got ${successes} of ${n})`);
  }
  if (n === 0) return { low: NaN, high: NaN };
  const z = normalQuantile(confidence);
  const p = successes / n;
  const z2 = z * z;
  const denom = 1 + z2 / n;
  const center = (p + z2 / (2 * n)) / denom;
  const half = (z / denom) * Math.sqrt((p * (1 - p)) / n + z2 / (4 * n * n));
  return { low: Math.max(0, center - half), high: Math.min(1, center + half) };
}

/**
 * Percentile bootstrap of a statistic over items: `iters` resamples with replacement (seeded), the
 * statistic of each, and the (1 − confidence)/2 and (1 + confidence)/2 quantiles (linear interpolation).
 * Fewer than two items give NaN bounds.
 *
 * @example
 * bootstrapInterval(docs, (s) => Math.exp(-sum(s.map((d) => d.ll)) / sum(s.map((d) => d.words))), { seed: 0 });
 */
export function bootstrapInterval<T>(items: readonly T[], statistic: (sample: readonly T[]) => number,
  options: { iters?: number; seed?: number; confidence?: number } = {}): Interval {
  const iters = options.iters ?? 1000;
  const confidence = options.confidence ?? 0.95;
  checkConfidence(confidence);
  if (!Number.isInteger(iters) || iters < 1) throw new Error(`bootstrapInterval: iters must be a positive integer (got ${iters})`);
  if (items.length < 2) return { low: NaN, high: NaN }; // one item resamples to itself: no interval, not a zero-width one
  const rng = new Rng(options.seed ?? 0);
  const stats: number[] = [];
  const sample: T[] = new Array(items.length);
  for (let b = 0; b < iters; b++) {
    for (let i = 0; i < items.length; i++) sample[i] = items[rng.int(items.length)];
    stats.push(statistic(sample));
  }
  return { low: quantile(stats, (1 - confidence) / 2), high: quantile(stats, (1 + confidence) / 2) };
}

/**
 * Standard error of a mean, sample standard deviation / √n (lm-eval's `mean_stderr`); NaN below 2 items.
 *
 * @example
 * meanStderr([1, 0, 1, 1]); // 0.25
 */
export function meanStderr(values: readonly number[]): number {
  const n = values.length;
  if (n < 2) return NaN;
  const mean = values.reduce((a, b) => a + b, 0) / n;
  const variance = values.reduce((a, v) => a + (v - mean) ** 2, 0) / (n - 1);
  return Math.sqrt(variance / n);
}
