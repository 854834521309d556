/**
 * Supervised fine-tuning (instruction tuning; Wei et al., "Finetuned Language Models Are Zero-Shot
 * Learners", arXiv 2109.01652; Ouyang et al., arXiv 2203.02155 §3) on prompt/completion or chat rows,
 * with TRL's `SFTTrainer` defaults where they exist: completion-only loss, ChatML, optional packing,
 * and multi-task mixing by weight with a held-out loss per task.
 */
import type { CausalLM } from '../model/transformer';
import type { Tokenizer } from '../tokenizer/tokenizer';
import { chatmlTemplate, ChatTemplate } from '../data/chat';
import { SftRow, TokenizedExample, tokenizeDefaults, tokenizeRows, TokenizeReport } from '../data/tokenize';
import { ExampleBatches, evalBatches, SftBatch, BatchStats } from '../data/batches';
import { Rng } from '../util/rng';
import { causalLmObjective, evaluateLm } from './causal-lm';
import { stepsForEpochs } from './schedule';
import { BatchSource, Objective, Trainer, TrainConfig, TrainResult, TrainerOptions, trainConfigKeys, trainDefaults } from './trainer';
import { withDefaults } from '../util/options';

/** Options of {@link sft}: the shared {@link TrainConfig} plus SFT's data knobs (TRL `SFTConfig` names). */
export interface SftConfig extends TrainConfig {
  /** Prompt-completion rows: loss on completion tokens only (TRL `completion_only_loss`: true). */
  completionOnlyLoss: boolean;
  /**
   * Chat rows: loss on assistant turns (and their `<|im_end|>`) only (TRL `assistant_only_loss`).
   * Default true here, unlike TRL's false: for chat rows it is this library's "completion only".
   */
  assistantOnlyLoss: boolean;
  /** Renders `messages` (TRL: the tokenizer's chat template; here ChatML). */
  template: ChatTemplate;
  /** Pack examples into full rows with per-document attention (TRL `packing`: false). */
  packing: boolean;
  /** Longest example in tokens (TRL `max_length`: 1024); `null` = the model's context + 1 (inputs fill the context). */
  maxLength: number | null;
  /** Rows per micro-batch (HF `per_device_train_batch_size`: 8). */
  batchSize: number;
  /** Held-out rows for single-task {@link sft}; `null` = no eval. */
  evalRows: readonly SftRow[] | null;
  /** Passes over the training rows of all tasks (TRL `num_train_epochs`); sets `maxSteps` unless that is given too. */
  epochs: number | null;
}

/**
 * Defaults. lr 5e-4 instead of TRL's 2e-5: TRL's rate is tuned for billion-parameter models; the 1M-param
 * shipped base (and models of that size) barely move at 2e-5 within a few hundred steps, while 5e-4
 * with linear decay learns the chat format in tens of steps without diverging.
 */
export const sftDefaults: Readonly<Omit<SftConfig, keyof TrainConfig> & Partial<TrainConfig>> = Object.freeze({
  lr: 5e-4, maxSteps: 100, completionOnlyLoss: true, assistantOnlyLoss: true, template: chatmlTemplate,
  packing: false, maxLength: null, batchSize: 8, evalRows: null, epochs: null,
});

/** One task of multi-task SFT. */
export interface SftTask {
  name: string;
  rows: readonly SftRow[];
  /** Relative sampling weight of the task's batches (> 0). */
  weight: number;
  /** Held-out rows of this task (its own eval loss). */
  evalRows?: readonly SftRow[];
}

/** Held-out loss of one task at one eval. */
export interface TaskEval {
  step: number;
  task: string;
  /** Token-weighted mean completion loss. */
  loss: number;
  /** Loss tokens evaluated. */
  tokens: number;
}

/** What {@link sft} and {@link multiTaskSft} return. */
export interface SftResult extends TrainResult {
  /** Per-task held-out losses at each eval (the trainer's `evals` hold their token-weighted mean). */
  taskEvals: TaskEval[];
  /** Tokenization and batching report per task. */
  tasks: { name: string; weight: number; tokenize: TokenizeReport; batches: BatchStats }[];
}

/**
 * Batches from several sources: each micro-batch comes from one task drawn with probability ∝ weight
 * (seeded; the draw depends only on seed and draw count, so restored runs match).
 */
export class MixedBatches<B> implements BatchSource<B> {
  draws = 0;
  private readonly cumulative: number[];

  constructor(readonly sources: readonly BatchSource<B>[], weights: readonly number[], readonly seed = 42) {
    if (sources.length === 0 || sources.length !== weights.length) throw new Error('MixedBatches: need one weight per source, at least one source');
    if (weights.some((w) => !(w > 0) || !Number.isFinite(w))) throw new RangeError(`MixedBatches: weights must be finite and > 0 (got ${weights.join(', ')})`);
    const total = weights.reduce((s, w) => s + w, 0);
    let acc = 0;
    this.cumulative = weights.map((w) => (acc += w / total));
  }

  /** Index of the source the next batch comes from. */
  peek(): number {
    const u = new Rng(this.seed * 1000003 + this.draws * 7919 + 1).next();
    const i = this.cumulative.findIndex((c) => u < c);
    return i < 0 ? this.cumulative.length - 1 : i;
  }

  next(): B {
    const i = this.peek();
    this.draws++;
    return this.sources[i].next();
  }

  state(): { draws: number; sources: unknown[] } {
    return { draws: this.draws, sources: this.sources.map((s) => s.state()) };
  }

  restore(state: unknown): void {
    const s = state as { draws?: unknown; sources?: unknown };
    if (typeof s?.draws !== 'number' || !Array.isArray(s.sources) || s.sources.length !== this.sources.length) throw new Error('MixedBatches.restore: state needs draws and one state per source');
    this.draws = s.draws;
    this.sources.forEach((src, i) => src.restore((s.sources as unknown[])[i]));
  }
}

function tokenizeFor(rows: readonly SftRow[], tok: Tokenizer, c: SftConfig, maxLength: number, what: string): { examples: TokenizedExample[]; report: TokenizeReport } {
  const r = tokenizeRows(rows, tok, { ...tokenizeDefaults, completionOnlyLoss: c.completionOnlyLoss, assistantOnlyLoss: c.assistantOnlyLoss, template: c.template, maxLength });
  if (r.examples.length === 0) throw new Error(`${what}: no usable examples (${r.report.rows} rows)`);
  return r;
}

/**
 * Multi-task SFT: tasks mixed by weight (per batch), each with its own held-out completion loss.
 *
 * @example
 * const r = await multiTaskSft(model, tok, [
 *   { name: 'faq', rows: faqRows, weight: 3, evalRows: faqHeld },
 *   { name: 'defs', rows: defRows, weight: 1, evalRows: defHeld },
 * ], { maxSteps: 200, evalEvery: 50 });
 * r.taskEvals.filter((e) => e.task === 'faq');
 */
export async function multiTaskSft(
  model: CausalLM, tokenizer: Tokenizer, tasks: readonly SftTask[], config: Partial<SftConfig> = {},
  options: TrainerOptions<SftBatch> & { onTrainer?: (t: Trainer<SftBatch>) => void } = {},
): Promise<SftResult> {
  const c = withDefaults(sftDefaults, config, 'sft', trainConfigKeys) as SftConfig;
  if (tasks.length === 0) throw new Error('multiTaskSft: no tasks');
  const names = new Set(tasks.map((t) => t.name));
  if (names.size !== tasks.length) throw new Error('multiTaskSft: task names must be unique');
  const ctx = model.config.contextLength - model.reservedPositions(); // prefix / prompt tuning take positions
  const maxLength = c.maxLength ?? ctx + 1;
  const seed = c.seed ?? trainDefaults.seed;
  const batchCfg = { packing: c.packing, seqLen: ctx, batchSize: c.batchSize, seed };
  const prepared = tasks.map((t, i) => {
    const { examples, report } = tokenizeFor(t.rows, tokenizer, c, maxLength, `task "${t.name}"`);
    const batches = new ExampleBatches(examples, tokenizer, { ...batchCfg, seed: seed + i });
    const held = t.evalRows && t.evalRows.length ? tokenizeFor(t.evalRows, tokenizer, c, maxLength, `task "${t.name}" eval rows`).examples : null;
    return { task: t, report, batches, held };
  });
  const data = prepared.length === 1 ? prepared[0].batches : new MixedBatches<SftBatch>(prepared.map((p) => p.batches), tasks.map((t) => t.weight), seed);
  const taskEvals: TaskEval[] = [];
  let trainer: Trainer<SftBatch> | undefined;
  let evaluate = options.evaluate;
  if (!evaluate && prepared.some((p) => p.held)) {
    evaluate = async (m) => {
      let sum = 0;
      let count = 0;
      for (const p of prepared) {
        if (!p.held) continue;
        const r = await evaluateLm(m, evalBatches(p.held, tokenizer, batchCfg));
        taskEvals.push({ step: trainer?.step ?? 0, task: p.task.name, loss: r.loss, tokens: r.tokens });
        sum += r.loss * r.tokens;
        count += r.tokens;
      }
      const loss = count > 0 ? sum / count : NaN;
      return { loss, perplexity: Math.exp(loss) };
    };
  }
  if (c.epochs !== null && config.maxSteps === undefined) {
    c.maxSteps = stepsForEpochs(c.epochs, prepared.reduce((s, p) => s + p.batches.stats.rows, 0), c.batchSize, c.gradAccumSteps ?? 1);
  }
  const { completionOnlyLoss: _a, assistantOnlyLoss: _b, template: _t, packing: _p, maxLength: _m, batchSize: _s, evalRows: _e, epochs: _n, ...train } = c;
  const t = new Trainer<SftBatch>(model, causalLmObjective as Objective<SftBatch>, data, train, { ...options, evaluate });
  trainer = t;
  options.onTrainer?.(t);
  try {
    const result = await t.train();
    return { ...result, taskEvals, tasks: prepared.map((p) => ({ name: p.task.name, weight: p.task.weight, tokenize: p.report, batches: p.batches.stats })) };
  } finally {
    t.dispose();
  }
}

/**
 * Supervised fine-tuning on prompt/completion or `messages` rows (completion-only / assistant-only loss,
 * ChatML, optional packing, examples up to the model's context); `config.evalRows` adds held-out loss.
 *
 * @example
 * const { model, tokenizer } = await base('tiny-llama');
 * const r = await sft(model, tokenizer, rows, { maxSteps: 200, evalRows: held, evalEvery: 50 });
 */
export async function sft(
  model: CausalLM, tokenizer: Tokenizer, rows: readonly SftRow[], config: Partial<SftConfig> = {},
  options: TrainerOptions<SftBatch> & { onTrainer?: (t: Trainer<SftBatch>) => void } = {},
): Promise<SftResult> {
  return multiTaskSft(model, tokenizer, [{ name: 'sft', rows, weight: 1, evalRows: config.evalRows ?? undefined }], config, options);
}
