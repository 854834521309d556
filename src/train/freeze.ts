/**
 * Full fine-tuning vs frozen-subset fine-tuning baselines: train only the top `n` transformer blocks
 * (optionally with the output head and the final norm) and freeze the rest. Layer freezing as a cheap
 * baseline against full fine-tuning and PEFT methods (cf. Lee et al., "What would Elsa do? Freezing
 * layers during transformer fine-tuning", arXiv 1911.03090).
 */
import type { CausalLM } from '../model/transformer';
import { withDefaults } from '../util/options';

/** Options of {@link freezeAllBut}. */
export interface FreezeConfig {
  /** Number of final transformer blocks (`layers.<i>.*`) left trainable; 0 trains none. */
  lastLayers: number;
  /** Keep the output head trainable (`lm_head.weight`, or the tied `embed_tokens.weight`). */
  includeHead: boolean;
  /** Keep the final norm (`norm.*`) trainable. */
  includeNorms: boolean;
  /** Keep the input embeddings trainable (also implied by `includeHead` on tied models). */
  includeEmbeddings: boolean;
}

/** Defaults of {@link FreezeConfig}: head and final norm trainable, embeddings frozen. */
export const freezeDefaults: Readonly<FreezeConfig> = Object.freeze({
  lastLayers: 1, includeHead: true, includeNorms: true, includeEmbeddings: false,
});

/** What {@link freezeAllBut} left trainable. */
export interface FreezeReport {
  /** Trainable parameter count (elements). */
  trainable: number;
  /** All parameters (elements). */
  total: number;
  /** 100 · trainable / total. */
  percent: number;
  /** Paths left trainable. */
  paths: string[];
}

/** Trainable / total parameter counts of a model as it stands. */
export function trainableReport(model: CausalLM): FreezeReport {
  const trainable = model.paramCount(true);
  const total = model.paramCount();
  return { trainable, total, percent: total > 0 ? (100 * trainable) / total : 0, paths: [...model.trainableParams().keys()] };
}

/**
 * Freezes every parameter except the last `lastLayers` blocks (and, by option, the head, final norm and
 * embeddings). Undo with `model.setTrainable(() => true, true)` (full fine-tuning).
 *
 * @example
 * const { trainable, percent } = freezeAllBut(model, { lastLayers: 1, includeHead: true });
 */
export function freezeAllBut(model: CausalLM, config: Partial<FreezeConfig> = {}): FreezeReport {
  const c: FreezeConfig = withDefaults(freezeDefaults, config, 'freeze');
  const n = model.config.nLayers;
  if (!Number.isInteger(c.lastLayers) || c.lastLayers < 0 || c.lastLayers > n) {
    throw new RangeError(`freezeAllBut: lastLayers must be an integer in [0, ${n}] (got ${c.lastLayers})`);
  }
  const tied = !model.params.has('lm_head.weight');
  const keep = (path: string): boolean => {
    const m = /^layers\.(\d+)\./.exec(path);
    if (m) return Number(m[1]) >= n - c.lastLayers;
    if (path.startsWith('lm_head.')) return c.includeHead;
    if (path.startsWith('norm.')) return c.includeNorms;
    if (path === 'embed_tokens.weight') return c.includeEmbeddings || (tied && c.includeHead);
    return c.includeEmbeddings; // position embeddings and anything else at the input
  };
  model.setTrainable(() => true, false);
  model.setTrainable(keep, true);
  return trainableReport(model);
}
