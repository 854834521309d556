/**
 * Model configuration: one decoder-only transformer, two families.
 *
 * - `llama`: RMSNorm, rotary position embeddings (HF rotate-half layout), SwiGLU MLP, grouped-query
 *   attention, no biases, tied or untied head (Touvron et al., arXiv 2302.13971).
 * - `gpt2`: LayerNorm, learned positions, GELU (tanh) MLP, biases, tied head (Radford et al., 2019).
 */

/** Which architecture family a {@link ModelConfig} describes. */
export type ModelFamily = 'llama' | 'gpt2';

/** Hyper-parameters of a causal LM. Sizes use the names of the papers (d_model, n_heads, ...). */
export interface ModelConfig {
  /** Architecture family. */
  family: ModelFamily;
  /** Number of token ids (embedding rows). */
  vocabSize: number;
  /** Longest sequence the model attends over (learned positions for gpt2; RoPE tables for llama). */
  contextLength: number;
  /** Width of the residual stream. */
  dModel: number;
  /** Number of transformer blocks. */
  nLayers: number;
  /** Number of query heads; `dModel` must be divisible by it. */
  nHeads: number;
  /** Number of key/value heads (grouped-query attention); divides `nHeads`. gpt2 uses `nHeads`. */
  nKvHeads: number;
  /** Inner width of the MLP. */
  dFf: number;
  /** Share the input embedding with the output head. */
  tieEmbeddings: boolean;
  /** Dropout on attention probabilities and residual branches while training. */
  dropout: number;
  /** Epsilon of RMSNorm / LayerNorm. */
  normEps: number;
  /** RoPE base frequency (llama). */
  ropeTheta: number;
  /** Std of the normal initialisation (residual projections are scaled by 1/sqrt(2·nLayers), as GPT-2). */
  initStd: number;
}

const shared = { vocabSize: 512, contextLength: 64, dModel: 128, nLayers: 4, nHeads: 4, dropout: 0, initStd: 0.02 };

/** Defaults of a small Llama-style model (the benchmark's reference size). */
export const llamaDefaults: Readonly<ModelConfig> = Object.freeze({
  ...shared, family: 'llama', nKvHeads: 4, dFf: 344, tieEmbeddings: true, normEps: 1e-5, ropeTheta: 10000,
});

/** Defaults of a small GPT-2-style model. */
export const gpt2Defaults: Readonly<ModelConfig> = Object.freeze({
  ...shared, family: 'gpt2', nKvHeads: 4, dFf: 512, tieEmbeddings: true, normEps: 1e-5, ropeTheta: 10000,
});

/**
 * Fills a partial config from its family's defaults and validates it.
 *
 * @example
 * const cfg = modelConfig({ family: 'llama', nLayers: 2, nKvHeads: 2 });
 */
export function modelConfig(partial: Partial<ModelConfig> & { family?: ModelFamily } = {}): ModelConfig {
  const family = partial.family ?? 'llama';
  const base = family === 'gpt2' ? gpt2Defaults : llamaDefaults;
  const cfg: ModelConfig = { ...base, ...partial, family };
  if (family === 'gpt2') {
    if (partial.nKvHeads !== undefined && partial.nKvHeads !== cfg.nHeads) {
      throw new Error(`config.nKvHeads: gpt2 has no grouped-query attention (got ${partial.nKvHeads}, nHeads ${cfg.nHeads})`);
    }
    cfg.nKvHeads = cfg.nHeads;
    if (partial.dFf === undefined) cfg.dFf = 4 * cfg.dModel;
  } else if (partial.nKvHeads === undefined) {
    cfg.nKvHeads = cfg.nHeads;
  }
  validateConfig(cfg);
  return cfg;
}

/** Throws an error naming the option when a config cannot describe a model. */
export function validateConfig(cfg: ModelConfig): void {
  const positive: (keyof ModelConfig)[] = ['vocabSize', 'contextLength', 'dModel', 'nLayers', 'nHeads', 'nKvHeads', 'dFf'];
  for (const key of positive) {
    const v = cfg[key];
    if (typeof v !== 'number' || !Number.isInteger(v) || v <= 0) throw new Error(`config.${key} must be a positive integer (got ${String(v)})`);
  }
  if (cfg.family !== 'llama' && cfg.family !== 'gpt2') throw new Error(`config.family must be "llama" or "gpt2" (got ${String(cfg.family)})`);
  if (cfg.dModel % cfg.nHeads !== 0) throw new Error(`config.dModel (${cfg.dModel}) must be divisible by config.nHeads (${cfg.nHeads})`);
  if (cfg.nHeads % cfg.nKvHeads !== 0) throw new Error(`config.nHeads (${cfg.nHeads}) must be divisible by config.nKvHeads (${cfg.nKvHeads})`);
  if (cfg.family === 'llama' && (cfg.dModel / cfg.nHeads) % 2 !== 0) throw new Error(`config: llama head size dModel/nHeads must be even for RoPE (got ${cfg.dModel / cfg.nHeads})`);
  if (!(cfg.dropout >= 0 && cfg.dropout < 1)) throw new Error(`config.dropout must be in [0, 1) (got ${cfg.dropout})`);
  if (!(cfg.normEps > 0)) throw new Error(`config.normEps must be > 0 (got ${cfg.normEps})`);
  if (!(cfg.initStd > 0)) throw new Error(`config.initStd must be > 0 (got ${cfg.initStd})`);
  if (!(cfg.ropeTheta > 0 && Number.isFinite(cfg.ropeTheta))) throw new Error(`config.ropeTheta must be a positive number (got ${cfg.ropeTheta})`);
}

/** Head size d_model / n_heads. */
export function headDim(cfg: ModelConfig): number {
  return cfg.dModel / cfg.nHeads;
}
