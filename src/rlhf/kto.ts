/**
 * KTO (Ethayarajh et al., "KTO: Model Alignment as Prospect Theoretic Optimization", arXiv 2402.01306) with
 * TRL `KTOTrainer` semantics: unpaired rows `{prompt, completion, label}` (TRL's unpaired preference
 * format), a frozen reference as DPO's (a copy, or the base with the adapter disabled), completion log-prob
 * sums, and the reference point z = max(0, mean(log π − log π_ref)) over mismatched (prompt, completion)
 * pairs of the same batch (each prompt with the previous row's completion), computed without gradient.
 * With r = log π(y|x) − log π_ref(y|x):
 *   desirable: λ_D·(1 − σ(β(r − z))),  undesirable: λ_U·(1 − σ(β(z − r))),  loss = mean over rows.
 */
import * as tf from '@tensorflow/tfjs';
import type { CausalLM } from '../model/transformer';
import type { Tokenizer } from '../tokenizer/tokenizer';
import { Content, PreferenceRow, TokenizeReport, TokenizedExample, tokenizeDefaults, tokenizeRow } from '../data/tokenize';
import { BatchConfig, BatchTokens, Piece, batchDefaults, toPieces } from '../data/batches';
import { validateDataset } from '../data/formats';
import { toTable } from '../data/load';
import type { LmBatch } from '../train/causal-lm';
import { BatchSource, TrainConfig, TrainerOptions, Trainer, trainConfigKeys } from '../train/trainer';
import { withDefaults } from '../util/options';
import { EpochOrder } from '../util/epochs';
import { sequenceLogProbs } from './logprobs';
import { DpoReference, ReferenceLogProbs, buildReference, disposeLm, piecesLmBatch } from './dpo';
import { LossAndMetrics, MetricRun, evaluateMetrics, metricObjective, trainWithMetrics } from './metric-run';

/** A row of TRL's unpaired preference format: one completion, `label` true when it is desirable. */
export interface UnpairedRow {
  prompt: Content;
  completion: Content;
  label: boolean;
}

/**
 * Preference pairs → unpaired rows (TRL `unpair_preference_dataset`): every chosen completion with label
 * true, then every rejected one with label false. Rows need an explicit prompt.
 *
 * @example
 * const rows = unpairPreferences(dataset('preferences') as PreferenceRow[]);   // 2 rows per pair
 */
export function unpairPreferences(rows: readonly PreferenceRow[]): UnpairedRow[] {
  rows.forEach((r, i) => {
    if (r.prompt === undefined) throw new Error(`unpairPreferences: row ${i + 1} has no "prompt" (an implicit prompt cannot be split off an unpaired completion)`);
  });
  return [
    ...rows.map((r) => ({ prompt: r.prompt!, completion: r.chosen, label: true })),
    ...rows.map((r) => ({ prompt: r.prompt!, completion: r.rejected, label: false })),
  ];
}

/**
 * Checks unpaired rows as the dataset loader does: a bad row throws a `DatasetError` naming `source`, the
 * row (1-based) and the column, e.g. `kto rows: row 3, column "label": expected a boolean …`.
 */
export function checkUnpairedRows(rows: readonly UnpairedRow[], source = 'kto rows'): void {
  if (rows.length === 0) throw new Error(`${source}: no rows`);
  validateDataset(toTable(rows as readonly object[]), 'unpaired-preference', { source });
}

/** Metric names, as TRL's KTOTrainer logs them (rewards and log-probs are means over desirable / undesirable rows). */
export const ktoMetricNames = ['kl', 'rewards/chosen', 'rewards/rejected', 'rewards/margins', 'logps/chosen', 'logps/rejected', 'logits/chosen', 'logits/rejected'] as const;
export type KtoMetricName = (typeof ktoMetricNames)[number];

/** Log-probs of a KTO batch, all (B,) but `kl`. */
export interface KtoLogProbs {
  /** Completion log-prob sums under the policy. */
  policy: tf.Tensor1D;
  /** The same under the reference. */
  reference: tf.Tensor1D;
  /** 1 for desirable rows, 0 for undesirable. */
  label: tf.Tensor1D;
  /** The reference point z (no gradient flows into it). */
  kl: tf.Scalar;
}

function checkKto(beta: number, desirableWeight: number, undesirableWeight: number): void {
  if (!(beta > 0) || !Number.isFinite(beta)) throw new RangeError(`KTO beta must be finite and > 0 (got ${beta})`);
  for (const [k, v] of [['desirableWeight', desirableWeight], ['undesirableWeight', undesirableWeight]] as const) {
    if (!(v >= 0) || !Number.isFinite(v)) throw new RangeError(`KTO ${k} must be finite and ≥ 0 (got ${v})`);
  }
}

/**
 * The KTO loss of a batch (mean over rows) and TRL's metrics. A metric over desirable (undesirable) rows is
 * NaN when the batch has none, as TRL then logs nothing.
 *
 * @example
 * const { loss, metrics } = tf.tidy(() => ktoLoss({ policy, reference, label, kl }, 0.1));
 */
export function ktoLoss(l: KtoLogProbs, beta = 0.1, desirableWeight = 1, undesirableWeight = 1): LossAndMetrics<Exclude<KtoMetricName, `logits/${string}`>> {
  checkKto(beta, desirableWeight, undesirableWeight);
  return tf.tidy(() => {
    const r = tf.sub(l.policy, l.reference);
    const undesirable = tf.sub(1, l.label);
    const des = tf.sub(1, tf.sigmoid(tf.mul(tf.sub(r, l.kl), beta)));
    const und = tf.sub(1, tf.sigmoid(tf.mul(tf.sub(l.kl, r), beta)));
    const losses = tf.add(tf.mul(des, tf.mul(l.label, desirableWeight)), tf.mul(und, tf.mul(undesirable, undesirableWeight)));
    const rewards = tf.mul(r, beta);
    const over = (x: tf.Tensor, w: tf.Tensor) => tf.div(tf.sum(tf.mul(x, w)), tf.sum(w)) as tf.Scalar;
    const rc = over(rewards, l.label);
    const rr = over(rewards, undesirable);
    return {
      loss: tf.mean(losses) as tf.Scalar,
      metrics: {
        kl: tf.clone(l.kl), 'rewards/chosen': rc, 'rewards/rejected': rr, 'rewards/margins': tf.sub(rc, rr) as tf.Scalar,
        'logps/chosen': over(l.policy, l.label), 'logps/rejected': over(l.policy, undesirable),
      },
    };
  });
}

/** A KTO micro-batch: B rows, their labels, reference log-probs and the batch's reference point. */
export interface KtoBatch {
  lm: LmBatch;
  label: tf.Tensor1D;
  ref: tf.Tensor1D;
  kl: tf.Scalar;
  rows: number;
}

/** An unpaired row ready for batching: its tokens (for mismatched KL rows) and its piece. */
export interface KtoItem {
  example: TokenizedExample;
  piece: Piece;
  label: boolean;
}

/** Frees a KTO batch. */
export function disposeKtoBatch(b: KtoBatch): void {
  disposeLm(b.lm);
  tf.dispose([b.label, b.ref, b.kl]);
}

/**
 * Seeded, reshuffled-per-epoch batches of unpaired rows. Each batch carries its reference log-probs and its
 * KL reference point, both computed here, outside the gradient tape: row k's mismatched pair is its prompt
 * with row k−1's completion (cyclically, TRL's shift), scored by the policy (eval mode) and the reference.
 */
export class KtoBatches implements BatchSource<KtoBatch> {
  readonly order: EpochOrder;
  private readonly config: BatchConfig;

  constructor(
    readonly items: readonly KtoItem[], private readonly tokens: Tokenizer | BatchTokens, readonly seqLen: number,
    readonly batchSize: number, private readonly reference: ReferenceLogProbs, private readonly policy: CausalLM, readonly seed = 42,
  ) {
    if (items.length === 0) throw new Error('KtoBatches: no rows');
    this.order = new EpochOrder(items.length, seed, 'KtoBatches');
    this.config = { ...batchDefaults, seqLen, overflow: 'truncate' };
  }

  /** The mismatched pieces of some rows (prompt of k, completion of k − 1); rows left with no completion token drop out. */
  mismatched(items: readonly KtoItem[]): Piece[] {
    return items.flatMap((x, k) => {
      const y = items[(k + items.length - 1) % items.length].example;
      const p = x.example.promptLength;
      const ids = [...x.example.ids.slice(0, p), ...y.ids.slice(y.promptLength)];
      const lossMask = [...new Array<number>(p).fill(0), ...y.lossMask.slice(y.promptLength)];
      return toPieces([{ ids, lossMask }], this.tokens, this.config).pieces;
    });
  }

  /** Batch of the given row indices (also used for evaluation). */
  batchOf(index: readonly number[]): KtoBatch {
    const items = index.map((i) => this.items[i]);
    const lm = piecesLmBatch(items.map((x) => x.piece), this.tokens, this.seqLen);
    const ref = this.reference(lm);
    const klPieces = index.length > 1 ? this.mismatched(items) : [];
    let kl: tf.Scalar;
    if (klPieces.length === 0) kl = tf.scalar(0);
    else {
      const klLm = piecesLmBatch(klPieces, this.tokens, this.seqLen);
      const refKl = this.reference(klLm);
      kl = tf.tidy(() => tf.maximum(tf.mean(tf.sub(sequenceLogProbs(this.policy, klLm, { training: false }).sum, refKl)), 0) as tf.Scalar);
      refKl.dispose();
      disposeLm(klLm);
    }
    return { lm, label: tf.tensor1d(items.map((x) => (x.label ? 1 : 0)), 'float32'), ref, kl, rows: index.length };
  }

  next(): KtoBatch {
    return this.batchOf(this.order.take(this.batchSize));
  }

  state(): { epoch: number; cursor: number } {
    return this.order.state();
  }

  restore(state: unknown): void {
    this.order.restore(state);
  }
}

/** The KTO loss and metrics of `model` on a batch, with TRL's `logits/*` (mean completion logit of each kind). */
export function ktoBatchLoss(beta: number, desirableWeight: number, undesirableWeight: number) {
  return (model: CausalLM, batch: KtoBatch, ctx: { training?: boolean; seed?: number }): LossAndMetrics<KtoMetricName> => tf.tidy(() => {
    const { sum, count, logitSum } = sequenceLogProbs(model, batch.lm, { training: ctx.training, seed: ctx.seed, logitSums: true });
    const r = ktoLoss({ policy: sum, reference: batch.ref, label: batch.label, kl: batch.kl }, beta, desirableWeight, undesirableWeight);
    const meanLogit = (w: tf.Tensor1D) => tf.div(tf.sum(tf.mul(logitSum!, w)), tf.mul(tf.sum(tf.mul(count, w)), model.config.vocabSize)) as tf.Scalar;
    return { loss: r.loss, metrics: { ...r.metrics, 'logits/chosen': meanLogit(batch.label), 'logits/rejected': meanLogit(tf.sub(1, batch.label) as tf.Tensor1D) } };
  });
}

/** Options of {@link kto}: the shared {@link TrainConfig} plus TRL `KTOConfig`'s knobs. */
export interface KtoConfig extends TrainConfig {
  /** β, the scale of the implied reward (TRL `beta`: 0.1). */
  beta: number;
  /** λ_D, weight of desirable rows' losses (TRL `desirable_weight`: 1.0). */
  desirableWeight: number;
  /** λ_U, weight of undesirable rows' losses (TRL `undesirable_weight`: 1.0). */
  undesirableWeight: number;
  /** Longest prompt + completion in tokens (TRL `max_length`: 1024), capped to the model's context + 1. */
  maxLength: number;
  /** Rows per micro-batch, at least 2: the KL estimate pairs each prompt with another row's completion (HF: 8). */
  batchSize: number;
  /** As DPO's: 'copy', 'adapter-disabled', a model, or `null` (adapter-disabled when adapters are active, else a copy). */
  reference: DpoReference | null;
  /** Held-out unpaired rows; metrics on them every `evalEvery` steps and at the end. `null` = no eval. */
  evalRows: readonly UnpairedRow[] | null;
  /** Evaluate before the first step too (the chart's baseline; HF `eval_on_start`: false). */
  evalOnStart: boolean;
}

/** Defaults: TRL's β and weights; lr 2e-4 instead of TRL's 1e-6, as for DPO (the shipped base is 1M parameters). */
export const ktoDefaults: Readonly<Omit<KtoConfig, keyof TrainConfig> & Partial<TrainConfig>> = Object.freeze({
  lr: 2e-4, beta: 0.1, desirableWeight: 1, undesirableWeight: 1, maxLength: 1024, batchSize: 8, reference: null, evalRows: null, evalOnStart: true,
});

/** A step's or an eval's KTO metrics. */
export type KtoMetrics = { step: number; loss: number } & Record<KtoMetricName, number>;

/** What {@link kto} returns. */
export interface KtoResult extends MetricRun<KtoMetricName> {
  /** Tokenization of the train (and eval) rows, with the desirable / undesirable rows kept. */
  data: { train: KtoData; eval?: KtoData };
  /** The reference mode used, and the tfjs memory it took. */
  reference: 'copy' | 'adapter-disabled' | 'model';
  referenceBytes: number;
}

/** Counts of the rows a KTO run uses. */
export type KtoData = TokenizeReport & { desirable: number; undesirable: number };

/** Unpaired rows → items that fit the model's context; rows with no completion token in it are dropped. */
export function prepareUnpaired(model: CausalLM, tokenizer: Tokenizer, rows: readonly UnpairedRow[], maxLength: number, what: string): { items: KtoItem[]; report: KtoData } {
  checkUnpairedRows(rows, `kto ${what} rows`);
  const seqLen = model.config.contextLength - model.reservedPositions();
  const config = { ...tokenizeDefaults, maxLength: Math.min(maxLength, seqLen + 1) };
  const pieceConfig = { ...batchDefaults, seqLen, overflow: 'truncate' as const };
  const items: KtoItem[] = [];
  let truncated = 0;
  let dropped = 0;
  rows.forEach((r, i) => {
    const example = tokenizeRow({ prompt: r.prompt, completion: r.completion }, tokenizer, config, `kto ${what} row ${i + 1}`);
    if (!example) return void dropped++;
    if (example.fullLength > example.ids.length) truncated++;
    const pieces = toPieces([example], tokenizer, pieceConfig).pieces;
    if (pieces.length === 1) items.push({ example, piece: pieces[0], label: r.label });
  });
  if (items.length === 0) throw new Error(`kto: no usable ${what} rows (${rows.length} rows; none has a completion token within ${config.maxLength} tokens)`);
  const desirable = items.filter((x) => x.label).length;
  return { items, report: { rows: rows.length, kept: items.length, truncated, dropped, noLoss: rows.length - dropped - items.length, desirable, undesirable: items.length - desirable } };
}

/**
 * Every row of a KTO set once, as batches for {@link evaluateMetrics}, in one fixed shuffled order (the same
 * at every eval): unpaired sets often list all desirable rows first, and a batch needs both kinds for its
 * metrics and other prompts for its mismatched KL pairs.
 */
function* ktoEvalBatches(data: KtoBatches): Generator<{ batch: KtoBatch; rows: number }> {
  const n = data.items.length;
  const order = new EpochOrder(n, data.seed, 'kto eval').take(n);
  for (let i = 0; i < n; i += data.batchSize) {
    const index = order.slice(i, i + data.batchSize);
    yield { batch: data.batchOf(index), rows: index.length };
  }
}

/**
 * Trains `model` with KTO on unpaired rows `{prompt, completion, label}` (e.g. `unpairPreferences` of the
 * shipped preferences). The reference is as DPO's. Returns the trainer's result plus per-step and held-out
 * metrics under TRL's names.
 *
 * @example
 * const r = await kto(model, tokenizer, unpairPreferences(dataset('preferences')), { maxSteps: 50, evalRows: unpairPreferences(dataset('preferences', 'heldout')) });
 * r.evalMetrics.at(-1)!['rewards/margins'];
 */
export async function kto(
  model: CausalLM, tokenizer: Tokenizer, rows: readonly UnpairedRow[], config: Partial<KtoConfig> = {},
  options: TrainerOptions<KtoBatch> & { onTrainer?: (t: Trainer<KtoBatch>) => void } = {},
): Promise<KtoResult> {
  const c = withDefaults(ktoDefaults, config, 'kto', trainConfigKeys) as KtoConfig;
  checkKto(c.beta, c.desirableWeight, c.undesirableWeight);
  if (!Number.isInteger(c.batchSize) || c.batchSize < 2) throw new RangeError(`KtoConfig.batchSize must be an integer ≥ 2: the KL term pairs each prompt with another row's completion (got ${c.batchSize})`);
  if (!Number.isInteger(c.maxLength) || c.maxLength < 2) throw new RangeError(`KtoConfig.maxLength must be an integer ≥ 2 (got ${c.maxLength})`);
  const seqLen = model.config.contextLength - model.reservedPositions();
  const train = prepareUnpaired(model, tokenizer, rows, c.maxLength, 'training');
  const held = c.evalRows && c.evalRows.length ? prepareUnpaired(model, tokenizer, c.evalRows, c.maxLength, 'eval') : undefined;
  const { fn: refFn, mode, referenceBytes } = buildReference(model, c.reference, 'kto');
  try {
    const data = new KtoBatches(train.items, tokenizer, seqLen, c.batchSize, refFn, model, c.seed ?? 42);
    const evalData = held && new KtoBatches(held.items, tokenizer, seqLen, c.batchSize, refFn, model, 0);
    const batchLoss = ktoBatchLoss(c.beta, c.desirableWeight, c.undesirableWeight);
    const objective = metricObjective(ktoMetricNames, batchLoss, disposeKtoBatch, (b) => b.lm.inputIds.size);
    const evaluate = evalData && ((step: number) => evaluateMetrics(model, ktoEvalBatches(evalData), ktoMetricNames, batchLoss, disposeKtoBatch, step));
    const r = await trainWithMetrics(model, objective, ktoMetricNames, data, c, evaluate, c.evalOnStart, options);
    return { ...r, data: { train: train.report, ...(held && { eval: held.report }) }, reference: mode, referenceBytes };
  } finally {
    refFn.owned?.dispose();
  }
}
