/**
 * Task-vector merging rules, as PEFT's `utils/merge_utils.py` names them: pure functions on flat host
 * arrays (float64) of equal length, one per adapter ("task tensor"). `addWeightedLora` applies them to
 * LoRA A/B matrices or to full updates ΔW. Weights multiply the task tensors as in PEFT.
 */
import { Rng } from '../util/rng';

/** PEFT's `majority_sign_method`: elect each entry's sign by the summed values or by counting signs. */
export type MajoritySignMethod = 'total' | 'frequency';

/** PEFT's `prune` methods: keep the largest magnitudes (TIES) or a random subset (DARE). */
export type PruneMethod = 'magnitude' | 'random';

function checkDensity(density: number, where: string): void {
  if (!(density >= 0 && density <= 1)) throw new Error(`${where}: density must be in [0, 1] (got ${density})`);
}

/**
 * PEFT's `magnitude_based_pruning` (TIES' trim, arXiv 2306.01708 §3): keeps the ⌊density·n⌋ entries of
 * largest magnitude and zeroes the rest. Ties are broken by position (lower index kept).
 */
export function magnitudeBasedPruning(t: ArrayLike<number>, density: number): Float64Array {
  checkDensity(density, 'magnitudeBasedPruning');
  const k = Math.floor(density * t.length);
  const order = Array.from({ length: t.length }, (_, i) => i).sort((x, y) => Math.abs(t[y]) - Math.abs(t[x]) || x - y);
  const out = new Float64Array(t.length);
  for (let i = 0; i < k; i++) out[order[i]] = t[order[i]];
  return out;
}

/**
 * PEFT's `random_pruning` (DARE's drop, arXiv 2311.03099 §3): keeps each entry with probability
 * `density` (one `rng` draw per entry, in order) and, with `rescale`, divides the kept ones by `density`
 * so the expectation is unchanged. (PEFT's own code computes the rescaled tensor and discards it; this
 * follows the paper.) Density 0 drops everything.
 */
export function randomPruning(t: ArrayLike<number>, density: number, rng: Rng, rescale: boolean): Float64Array {
  checkDensity(density, 'randomPruning');
  const out = new Float64Array(t.length);
  if (density === 0) return out;
  const f = rescale ? 1 / density : 1;
  for (let i = 0; i < t.length; i++) if (rng.next() < density) out[i] = t[i] * f;
  return out;
}

/** PEFT's `prune`: density ≥ 1 keeps the tensor as it is (no rescale), else trims by `method`. */
export function prune(t: ArrayLike<number>, density: number, method: PruneMethod, options: { rng?: Rng; rescale?: boolean } = {}): Float64Array {
  if (density >= 1) return Float64Array.from(t);
  if (method === 'magnitude') return magnitudeBasedPruning(t, density);
  if (!options.rng) throw new Error("prune: method 'random' needs an rng");
  return randomPruning(t, density, options.rng, options.rescale ?? false);
}

/**
 * PEFT's `calculate_majority_sign_mask` (TIES' elect, arXiv 2306.01708 §3): the elected sign of entry j is
 * + where Σᵢ tᵢ[j] ≥ 0 ('total') or Σᵢ sign(tᵢ[j]) ≥ 0 ('frequency'), else −; mask[i][j] says whether
 * tᵢ[j] has the elected sign (zeros never do).
 */
export function calculateMajoritySignMask(tensors: readonly ArrayLike<number>[], method: MajoritySignMethod = 'total'): Uint8Array[] {
  if (method !== 'total' && method !== 'frequency') throw new Error(`calculateMajoritySignMask: method must be "total" or "frequency" (got ${JSON.stringify(method)})`);
  const n = sameLength(tensors, 'calculateMajoritySignMask');
  const elected = new Float64Array(n);
  for (let j = 0; j < n; j++) {
    let sum = 0;
    for (const t of tensors) sum += method === 'total' ? t[j] : Math.sign(t[j]);
    elected[j] = sum >= 0 ? 1 : -1;
  }
  return tensors.map((t) => Uint8Array.from({ length: n }, (_, j) => (Math.sign(t[j]) === elected[j] ? 1 : 0)));
}

/**
 * PEFT's `disjoint_merge` (TIES' disjoint merge): per entry, the mean of the values whose sign agrees with
 * the elected one (mask 1); 0 where none does.
 */
export function disjointMerge(tensors: readonly ArrayLike<number>[], mask: readonly Uint8Array[]): Float64Array {
  const n = sameLength(tensors, 'disjointMerge');
  const out = new Float64Array(n);
  for (let j = 0; j < n; j++) {
    let sum = 0;
    let count = 0;
    tensors.forEach((t, i) => {
      if (mask[i][j]) {
        sum += t[j];
        count++;
      }
    });
    out[j] = sum / Math.max(count, 1);
  }
  return out;
}

/** PEFT's `task_arithmetic` (Ilharco et al., arXiv 2212.04089): Σᵢ wᵢ·tᵢ. */
export function taskArithmetic(tensors: readonly ArrayLike<number>[], weights: readonly number[]): Float64Array {
  const n = sameLength(tensors, 'taskArithmetic', weights);
  const out = new Float64Array(n);
  tensors.forEach((t, i) => {
    for (let j = 0; j < n; j++) out[j] += weights[i] * t[j];
  });
  return out;
}

/** PEFT's `magnitude_prune`: each tensor trimmed to its top-`density` magnitudes, then Σᵢ wᵢ·tᵢ. */
export function magnitudePrune(tensors: readonly ArrayLike<number>[], weights: readonly number[], density: number): Float64Array {
  return taskArithmetic(tensors.map((t) => prune(t, density, 'magnitude')), weights);
}

/**
 * PEFT's `ties` (TIES-Merging, Yadav et al., arXiv 2306.01708): trim each tensor to its top-`density`
 * magnitudes, elect signs on the trimmed (unweighted) tensors, then the disjoint mean of wᵢ·tᵢ.
 */
export function ties(tensors: readonly ArrayLike<number>[], weights: readonly number[], density: number, majoritySignMethod: MajoritySignMethod = 'total'): Float64Array {
  sameLength(tensors, 'ties', weights);
  const trimmed = tensors.map((t) => prune(t, density, 'magnitude'));
  const mask = calculateMajoritySignMask(trimmed, majoritySignMethod);
  return disjointMerge(trimmed.map((t, i) => t.map((x) => x * weights[i])), mask);
}

/** PEFT's `dare_linear` (DARE, Yu et al., arXiv 2311.03099): random drop with rescale 1/density, then Σᵢ wᵢ·tᵢ. */
export function dareLinear(tensors: readonly ArrayLike<number>[], weights: readonly number[], density: number, rng: Rng): Float64Array {
  sameLength(tensors, 'dareLinear', weights);
  return taskArithmetic(tensors.map((t) => prune(t, density, 'random', { rng, rescale: true })), weights);
}

/** PEFT's `dare_ties` (DARE, arXiv 2311.03099, with TIES' sign election and disjoint merge). */
export function dareTies(tensors: readonly ArrayLike<number>[], weights: readonly number[], density: number, rng: Rng, majoritySignMethod: MajoritySignMethod = 'total'): Float64Array {
  sameLength(tensors, 'dareTies', weights);
  const dropped = tensors.map((t) => prune(t, density, 'random', { rng, rescale: true }));
  const mask = calculateMajoritySignMask(dropped, majoritySignMethod);
  return disjointMerge(dropped.map((t, i) => t.map((x) => x * weights[i])), mask);
}

function sameLength(tensors: readonly ArrayLike<number>[], where: string, weights?: readonly number[]): number {
  if (tensors.length === 0) throw new Error(`${where}: no task tensors`);
  if (weights && weights.length !== tensors.length) throw new Error(`${where}: ${tensors.length} task tensors but ${weights.length} weights`);
  const n = tensors[0].length;
  tensors.forEach((t, i) => {
    if (t.length !== n) throw new Error(`${where}: task tensor ${i} has ${t.length} values, tensor 0 has ${n}`);
  });
  return n;
}
