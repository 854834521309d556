/**
 * Merging a config with its defaults while refusing option names that do not exist. TypeScript catches a
 * misspelt `maxStep` at compile time, but notebooks, JavaScript callers and `as any` do not, and a silently
 * ignored option trains with the default instead: so every config is checked at run time too.
 */

/**
 * `{ ...defaults, ...options }`, after checking that every key of `options` is a key of `defaults` or in
 * `also` (the config's optional fields that have no default). `where` names the verb or config in the error.
 *
 * @example
 * const c = withDefaults(loraDefaults, config, 'lora');
 * withDefaults(trainDefaults, { maxStep: 10 }, 'train', ['outDir']);
 * // Error: train: unknown option "maxStep"; did you mean "maxSteps"?
 */
export function withDefaults<D extends object, O extends object>(defaults: D, options: O | undefined, where: string, also: readonly string[] = []): Mutable<D> & O {
  if (options !== undefined) checkOptions(options, [...Object.keys(defaults), ...also], where);
  return { ...defaults, ...options } as Mutable<D> & O;
}

/** `T` without `readonly`: the merged config is a fresh object (defaults objects are frozen). */
export type Mutable<T> = { -readonly [K in keyof T]: T[K] };

/**
 * Throws when `options` has a key outside `valid`, naming it, the nearest valid one and where it was passed:
 * `sft: unknown option "maxStep"; did you mean "maxSteps"?`. Non-objects are refused too.
 *
 * @example
 * checkOptions({ rank: 8 }, ['r', 'alpha'], 'lora');   // Error: lora: unknown option "rank"; did you mean "r"?
 */
export function checkOptions(options: unknown, valid: readonly string[], where: string): void {
  if (options === undefined) return;
  if (typeof options !== 'object' || options === null || Array.isArray(options)) {
    throw new TypeError(`${where}: options must be an object, got ${options === null ? 'null' : Array.isArray(options) ? 'an array' : typeof options}`);
  }
  for (const key of Object.keys(options)) {
    if (valid.includes(key)) continue;
    const near = nearestOption(key, valid);
    const hint = near ? `; did you mean "${near}"?` : `; valid options: ${[...new Set(valid)].sort().join(', ')}`;
    throw new Error(`${where}: unknown option "${key}"${hint}`);
  }
}

// Other libraries' names for tunelab's fields (PEFT, TRL, transformers), checked before edit distance.
const ALIASES: Readonly<Record<string, readonly string[]>> = {
  r: ['rank', 'loraR', 'loraRank'],
  alpha: ['loraAlpha', 'scale', 'scaling'],
  dropout: ['loraDropout'],
  lr: ['learningRate', 'learnRate', 'lR'],
  maxSteps: ['steps', 'numSteps', 'iterations', 'iters'],
  epochs: ['numTrainEpochs', 'numEpochs', 'epoch'],
  batchSize: ['perDeviceTrainBatchSize', 'trainBatchSize', 'bs'],
  gradAccumSteps: ['gradientAccumulationSteps', 'accumulationSteps'],
  warmupSteps: ['warmup'],
  maxGradNorm: ['gradClip', 'clipNorm', 'gradientClipping'],
  schedule: ['lrSchedulerType', 'scheduler', 'lrSchedule'],
  seed: ['randomSeed', 'randomState'],
  gradientCheckpointing: ['activationCheckpointing', 'checkpointActivations', 'useGradientCheckpointing'],
  maxNewTokens: ['maxTokens', 'maxLength', 'numTokens'],
  maxLength: ['maxSeqLength', 'maxSeqLen', 'seqLength'],
  seqLen: ['seqLength', 'contextLength', 'blockSize'],
  targetModules: ['targets', 'modules'],
  lastLayers: ['layers', 'numLayers', 'unfreezeLayers'],
  klCoef: ['kl', 'klCoeff', 'initKlCoef'],
  cliprange: ['clipRange', 'clip'],
  numVirtualTokens: ['virtualTokens', 'numTokens'],
};

/**
 * The valid option closest to `name`: the same name in camelCase (`max_steps` → `maxSteps`), another
 * library's name for it (`rank` → `r`, `lora_alpha` → `alpha`, `learning_rate` → `lr`), one within a
 * small edit distance (case ignored), or another ending of the same word. Undefined when nothing is near.
 *
 * @example
 * nearestOption('maxStep', ['lr', 'maxSteps']);   // 'maxSteps'
 */
export function nearestOption(name: string, valid: readonly string[]): string | undefined {
  const camel = name.replace(/[_-]+([a-zA-Z0-9])/g, (_, c: string) => c.toUpperCase());
  if (valid.includes(camel)) return camel;
  const lower = camel.toLowerCase();
  const caseOnly = valid.find((v) => v.toLowerCase() === lower);
  if (caseOnly) return caseOnly;
  for (const v of valid) if (ALIASES[v]?.some((a) => a.toLowerCase() === lower)) return v;
  let best: string | undefined;
  let bestD = Infinity;
  for (const v of valid) {
    const d = editDistance(lower, v.toLowerCase());
    if (d < bestD) [best, bestD] = [v, d];
  }
  // Allow about one edit per three characters (at least one, at most three) so short names stay strict.
  if (bestD <= Math.min(3, Math.max(1, Math.floor(lower.length / 3)))) return best;
  // Another ending of the same word (`truncate` → `truncation`): a long shared start.
  const start = (v: string) => {
    let k = 0;
    while (k < lower.length && k < v.length && lower[k] === v[k].toLowerCase()) k++;
    return k;
  };
  const byStart = valid.map((v) => ({ v, k: start(v) })).sort((a, b) => b.k - a.k)[0];
  return byStart && byStart.k >= 5 && byStart.k >= 0.6 * Math.min(lower.length, byStart.v.length) ? byStart.v : undefined;
}

/** Edit distance counting insertions, deletions, substitutions and swaps of adjacent letters (optimal string alignment). */
export function editDistance(a: string, b: string): number {
  const d: number[][] = Array.from({ length: a.length + 1 }, (_, i) => [i, ...new Array<number>(b.length).fill(0)]);
  for (let j = 1; j <= b.length; j++) d[0][j] = j;
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      d[i][j] = Math.min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + (a[i - 1] === b[j - 1] ? 0 : 1));
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) d[i][j] = Math.min(d[i][j], d[i - 2][j - 2] + 1);
    }
  }
  return d[a.length][b.length];
}
