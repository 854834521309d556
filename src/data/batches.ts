/**
 * Tokenized examples → next-token batches, padded or packed.
 *
 * Each example of n ids becomes n − 1 (input, target) pairs: inputs ids[0..n−2], targets ids[1..n−1],
 * and the target's loss-mask value (tokenize.ts marks tokens; here the mark moves onto the position
 * that predicts the token). A "piece" is such a run of pairs, at most `seqLen` long; longer examples
 * are split into several pieces (or truncated).
 *
 * - Padding (TRL's default, `packing: false`): one piece per row, right-padded with the pad id to the
 *   longest row of the batch (or a multiple of `padToMultipleOf`).
 * - Packing (`packing: true`): pieces share rows of exactly `seqLen` positions, placed by best-fit
 *   decreasing (TRL's "bfd"). Each piece gets its own segment id and positions restarting at 0, so with
 *   the model's segment mask no token attends across a document boundary, and the result equals
 *   running each document alone. Because every pair stays inside its document, no position's target is
 *   the first token of the next document: the boundary needs no extra masking.
 *
 * Pad positions have segment id −1, target = pad id and loss mask 0; their positions continue the
 * column index (always < seqLen, so any model whose context fits `seqLen` accepts them).
 */
import * as tf from '@tensorflow/tfjs';
import type { Tokenizer } from '../tokenizer/tokenizer';
import type { LmBatch } from '../train/causal-lm';
import type { BatchSource } from '../train/trainer';
import { EpochOrder } from '../util/epochs';
import { withDefaults } from '../util/options';
import type { TokenizedExample } from './tokenize';

/** An {@link LmBatch} with document structure: all (B, T) int32. */
export interface SftBatch extends LmBatch {
  /** Document of each position within its row (0, 1, … when packed); −1 on padding. */
  segmentIds: tf.Tensor2D;
  /** Position of each token within its document (restarts at 0 per document). */
  positionIds: tf.Tensor2D;
}

/** A batch as plain row-major arrays of `rows × seqLen` (what {@link toSftBatch} turns into tensors). */
export interface BatchArrays {
  rows: number;
  seqLen: number;
  inputIds: Int32Array;
  targets: Int32Array;
  lossMask: Float32Array;
  segmentIds: Int32Array;
  positionIds: Int32Array;
}

/** What a long example becomes: several pieces (`split`) or its first `seqLen` pairs (`truncate`). */
export type OverflowMode = 'split' | 'truncate';

/** Options of {@link ExampleBatches} and friends. Start from {@link batchDefaults}. */
export interface BatchConfig {
  /** Rows per batch (HF `per_device_train_batch_size`: 8). */
  batchSize: number;
  /** Pack several examples per row (TRL `packing`: false). */
  packing: boolean;
  /** Positions per packed row, and the most per padded row (TRL `max_length`: 1024). */
  seqLen: number;
  /** Padded rows are rounded up to a multiple of this (capped at `seqLen`); `null` for the longest row. */
  padToMultipleOf: number | null;
  /** Examples with more than `seqLen` pairs: split into several pieces (TRL "bfd_split") or truncate ("bfd"). */
  overflow: OverflowMode;
  /**
   * Append EOS to an example that does not end with it (and was not truncated), so every document ends
   * with a separator; its loss mask copies the example's last token. Text and prompt-completion
   * examples already end with EOS, so this only touches chats and pre-tokenized examples.
   */
  appendEos: boolean;
  /** Seed of the per-epoch shuffle. */
  seed: number;
}

/**
 * Defaults. Frozen: override by spreading.
 *
 * @example
 * const config: BatchConfig = { ...batchDefaults, packing: true, seqLen: 256 };
 */
export const batchDefaults: Readonly<BatchConfig> = Object.freeze({
  batchSize: 8,
  packing: false,
  seqLen: 1024,
  padToMultipleOf: null,
  overflow: 'split',
  appendEos: true,
  seed: 42,
});

/** Token ids batches need. */
export interface BatchTokens {
  pad: number;
  eos: number;
}

/** What batches need of an example: {@link TokenizedExample}, or ids and a mask made elsewhere. */
export type ExampleLike = Pick<TokenizedExample, 'ids' | 'lossMask'> & Partial<Pick<TokenizedExample, 'fullLength'>>;

/** A document's (input, target, mask) pairs, at most `seqLen` long. */
export interface Piece {
  inputs: number[];
  targets: number[];
  /** Loss mask of each target. */
  mask: number[];
}

/** What turning examples into pieces did. */
export interface PieceStats {
  examples: number;
  pieces: number;
  /** Examples cut into several pieces. */
  split: number;
  /** Examples that lost pairs to `overflow: 'truncate'`. */
  truncated: number;
  /** Examples with fewer than 2 tokens (nothing to predict). */
  tooShort: number;
  /** Pieces left out because none of their targets counts. */
  noLoss: number;
}

function tokensOf(t: Tokenizer | BatchTokens): BatchTokens {
  if (!('specialTokens' in t)) return t;
  const { pad, eos } = t.specialTokens;
  if (!eos) throw new Error(`${t.source} has no eos token, which batches use as separator`);
  return { pad: (pad ?? eos).id, eos: eos.id };
}

function checkConfig(c: BatchConfig): void {
  const positiveInt = (name: keyof BatchConfig, v: unknown) => {
    if (typeof v !== 'number' || !Number.isInteger(v) || v < 1) throw new RangeError(`${name} must be a positive integer (got ${String(v)})`);
  };
  positiveInt('batchSize', c.batchSize);
  positiveInt('seqLen', c.seqLen);
  if (c.padToMultipleOf !== null) positiveInt('padToMultipleOf', c.padToMultipleOf);
  if (c.overflow !== 'split' && c.overflow !== 'truncate') throw new RangeError(`overflow must be 'split' or 'truncate' (got ${String(c.overflow)})`);
}

/**
 * Shifts examples into pieces of at most `seqLen` pairs. Pieces whose targets all have mask 0 are
 * dropped (they cost compute and teach nothing).
 *
 * @example
 * const { pieces } = toPieces([{ ids: [5, 6, 7], lossMask: [0, 1, 1], promptLength: 1, fullLength: 3 }], { pad: 2, eos: 0 });
 * pieces[0]; // { inputs: [5, 6, 7], targets: [6, 7, 0], mask: [1, 1, 1] } (EOS appended)
 */
export function toPieces(examples: readonly ExampleLike[], tokens: Tokenizer | BatchTokens, config: Readonly<BatchConfig> = batchDefaults): { pieces: Piece[]; stats: PieceStats } {
  checkConfig(config);
  const { eos } = tokensOf(tokens);
  const T = config.seqLen;
  const stats: PieceStats = { examples: examples.length, pieces: 0, split: 0, truncated: 0, tooShort: 0, noLoss: 0 };
  const pieces: Piece[] = [];
  examples.forEach((ex, e) => {
    if (ex.ids.length !== ex.lossMask.length) throw new Error(`examples[${e}]: ids (${ex.ids.length}) and lossMask (${ex.lossMask.length}) differ in length`);
    let ids = ex.ids;
    let mask = ex.lossMask;
    const cut = ex.fullLength !== undefined && ex.fullLength > ex.ids.length;
    if (config.appendEos && ids.length > 0 && ids[ids.length - 1] !== eos && !cut) {
      ids = [...ids, eos];
      mask = [...mask, mask[mask.length - 1]];
    }
    const pairs = ids.length - 1;
    if (pairs < 1) return void stats.tooShort++;
    const chunks = Math.ceil(pairs / T);
    if (chunks > 1 && config.overflow === 'split') stats.split++;
    if (chunks > 1 && config.overflow === 'truncate') stats.truncated++;
    for (let k = 0; k < (config.overflow === 'split' ? chunks : 1); k++) {
      // Chunk k predicts ids[kT+1 .. (k+1)T]; its first input is the previous chunk's last target, so no token is lost.
      const lo = k * T;
      const hi = Math.min(lo + T, pairs);
      const piece = { inputs: ids.slice(lo, hi), targets: ids.slice(lo + 1, hi + 1), mask: mask.slice(lo + 1, hi + 1) };
      if (!piece.mask.some((m) => m !== 0)) stats.noLoss++;
      else pieces.push(piece);
    }
  });
  stats.pieces = pieces.length;
  return { pieces, stats };
}

function emptyArrays(rows: number, seqLen: number, pad: number): BatchArrays {
  const n = rows * seqLen;
  const a: BatchArrays = {
    rows, seqLen,
    inputIds: new Int32Array(n).fill(pad),
    targets: new Int32Array(n).fill(pad),
    lossMask: new Float32Array(n),
    segmentIds: new Int32Array(n).fill(-1),
    positionIds: new Int32Array(n),
  };
  for (let i = 0; i < n; i++) a.positionIds[i] = i % seqLen;
  return a;
}

function place(a: BatchArrays, row: number, col: number, piece: Piece, segment: number): void {
  const at = row * a.seqLen + col;
  for (let t = 0; t < piece.inputs.length; t++) {
    a.inputIds[at + t] = piece.inputs[t];
    a.targets[at + t] = piece.targets[t];
    a.lossMask[at + t] = piece.mask[t];
    a.segmentIds[at + t] = segment;
    a.positionIds[at + t] = t;
  }
}

/**
 * One padded row per piece: right padding to the longest piece, rounded up to `padToMultipleOf` and
 * capped at `seqLen`.
 *
 * @example
 * const a = padPieces(pieces.slice(0, 8), { pad: 2, eos: 0 }, { ...batchDefaults, padToMultipleOf: 8 });
 */
export function padPieces(pieces: readonly Piece[], tokens: Tokenizer | BatchTokens, config: Readonly<BatchConfig> = batchDefaults): BatchArrays {
  checkConfig(config);
  if (pieces.length === 0) throw new Error('padPieces: no pieces');
  const longest = Math.max(...pieces.map((p) => p.inputs.length));
  if (longest > config.seqLen) throw new RangeError(`padPieces: a piece has ${longest} positions, more than seqLen ${config.seqLen}`);
  const m = config.padToMultipleOf;
  const T = m === null ? longest : Math.min(Math.ceil(longest / m) * m, config.seqLen);
  const a = emptyArrays(pieces.length, T, tokensOf(tokens).pad);
  pieces.forEach((p, i) => place(a, i, 0, p, 0));
  return a;
}

/**
 * Best-fit decreasing: longest first, each into the open row with the least room that still fits it.
 * Returns rows as lists of item indices. Deterministic (ties keep input order).
 */
function bestFitDecreasing(lengths: readonly number[], capacity: number): number[][] {
  const order = lengths.map((_, i) => i).sort((x, y) => lengths[y] - lengths[x] || x - y);
  const rows: number[][] = [];
  const byRoom: number[][] = Array.from({ length: capacity + 1 }, () => []); // open rows by free positions
  for (const i of order) {
    const len = lengths[i];
    let room = len;
    while (room <= capacity && byRoom[room].length === 0) room++;
    let row: number;
    if (room > capacity) {
      row = rows.push([]) - 1;
      room = capacity;
    } else row = byRoom[room].shift()!;
    rows[row].push(i);
    if (room - len > 0) byRoom[room - len].push(row);
  }
  return rows;
}

/**
 * Packs pieces into rows of exactly `seqLen` positions (best-fit decreasing); each piece is its own
 * segment with positions from 0; leftover positions are padding.
 *
 * @example
 * const a = packPieces(pieces, tok, { ...batchDefaults, seqLen: 128 });
 * a.rows; // rows needed
 */
export function packPieces(pieces: readonly Piece[], tokens: Tokenizer | BatchTokens, config: Readonly<BatchConfig> = batchDefaults): BatchArrays {
  checkConfig(config);
  const T = config.seqLen;
  const rows = bestFitDecreasing(pieces.map((p) => p.inputs.length), T);
  const a = emptyArrays(rows.length, T, tokensOf(tokens).pad);
  rows.forEach((items, r) => {
    let col = 0;
    items.forEach((i, segment) => {
      place(a, r, col, pieces[i], segment);
      col += pieces[i].inputs.length;
    });
  });
  return a;
}

/**
 * The given rows of `a`, in that order (a batch out of all packed rows).
 *
 * @example
 * const batch = toSftBatch(selectRows(packPieces(pieces, tok), [3, 0]));
 */
export function selectRows(a: BatchArrays, rows: readonly number[]): BatchArrays {
  const T = a.seqLen;
  const out = emptyArrays(rows.length, T, 0);
  rows.forEach((r, i) => {
    for (const k of ['inputIds', 'targets', 'lossMask', 'segmentIds', 'positionIds'] as const) out[k].set(a[k].subarray(r * T, (r + 1) * T), i * T);
  });
  return out;
}

/**
 * Tensors of a batch (ids, targets, segments, positions int32; loss mask float32). Free them with
 * `causalLmObjective.dispose`.
 *
 * @example
 * const batch = toSftBatch(packPieces(pieces, tok));
 */
export function toSftBatch(a: BatchArrays): SftBatch {
  const shape: [number, number] = [a.rows, a.seqLen];
  return {
    inputIds: tf.tensor2d(a.inputIds, shape, 'int32'),
    targets: tf.tensor2d(a.targets, shape, 'int32'),
    lossMask: tf.tensor2d(a.lossMask, shape, 'float32'),
    segmentIds: tf.tensor2d(a.segmentIds, shape, 'int32'),
    positionIds: tf.tensor2d(a.positionIds, shape, 'int32'),
  };
}

/** How {@link ExampleBatches} laid out its data. */
export interface BatchStats extends PieceStats {
  /** Rows per epoch: pieces when padding, packed rows when packing. */
  rows: number;
  /** Share of packed positions holding tokens (1 when padding: the batch decides its width). */
  fill: number;
}

function layout(examples: readonly ExampleLike[], tokens: BatchTokens, config: BatchConfig): { pieces: Piece[]; packed?: BatchArrays; stats: BatchStats } {
  const { pieces, stats } = toPieces(examples, tokens, config);
  if (pieces.length === 0) throw new Error(`no example has a target token that counts toward the loss (${examples.length} examples, ${stats.tooShort} too short, ${stats.noLoss} pieces without loss tokens)`);
  if (!config.packing) return { pieces, stats: { ...stats, rows: pieces.length, fill: 1 } };
  const packed = packPieces(pieces, tokens, config);
  const used = pieces.reduce((s, p) => s + p.inputs.length, 0);
  return { pieces, packed, stats: { ...stats, rows: packed.rows, fill: used / (packed.rows * packed.seqLen) } };
}

/**
 * Training batches over tokenized examples: padded or packed rows, reshuffled each epoch with a seeded
 * RNG. Its position (epoch, cursor) saves in checkpoints, so a resumed run sees the same batches.
 * Packing happens once, up front; each epoch shuffles the packed rows.
 *
 * @example
 * const { examples } = tokenizeRows(rows, tok, { ...tokenizeDefaults, maxLength: 257 });
 * const data = new ExampleBatches(examples, tok, { ...batchDefaults, packing: true, seqLen: 256, batchSize: 4 });
 * const trainer = new Trainer(model, causalLmObjective, data, { lr: 1e-3, maxSteps: 100 });
 */
export class ExampleBatches implements BatchSource<SftBatch> {
  readonly config: Readonly<BatchConfig>;
  readonly stats: Readonly<BatchStats>;
  /** Visiting order of the rows and the position in it. */
  readonly order: EpochOrder;
  private readonly tokens: BatchTokens;
  private readonly pieces: Piece[];
  private readonly packed?: BatchArrays;

  constructor(examples: readonly ExampleLike[], tokens: Tokenizer | BatchTokens, config: Partial<BatchConfig> = {}) {
    this.config = Object.freeze(withDefaults(batchDefaults, config, 'batches'));
    this.tokens = tokensOf(tokens);
    const { pieces, packed, stats } = layout(examples, this.tokens, this.config);
    this.pieces = pieces;
    this.packed = packed;
    this.stats = Object.freeze(stats);
    this.order = new EpochOrder(stats.rows, this.config.seed, 'ExampleBatches');
  }

  /** The next batch's arrays (what {@link next} turns into tensors). */
  nextArrays(): BatchArrays {
    const picked = this.order.take(this.config.batchSize);
    return this.packed ? selectRows(this.packed, picked) : padPieces(picked.map((i) => this.pieces[i]), this.tokens, this.config);
  }

  next(): SftBatch {
    return toSftBatch(this.nextArrays());
  }

  state(): { epoch: number; cursor: number } {
    return this.order.state();
  }

  restore(state: unknown): void {
    this.order.restore(state);
  }
}

/**
 * Every example once, in order, in batches (for evaluation): the same pieces and packing as
 * {@link ExampleBatches} without shuffling; the last batch may be smaller.
 *
 * @example
 * const { loss } = await evaluateLm(model, evalBatches(heldOut, tok, { ...batchDefaults, batchSize: 16 }));
 */
export function* evalBatches(examples: readonly ExampleLike[], tokens: Tokenizer | BatchTokens, config: Partial<BatchConfig> = {}): Generator<SftBatch> {
  const c = withDefaults(batchDefaults, config, 'evalBatches');
  const t = tokensOf(tokens);
  const { pieces, packed, stats } = layout(examples, t, c);
  for (let i = 0; i < stats.rows; i += c.batchSize) {
    const rows = Array.from({ length: Math.min(c.batchSize, stats.rows - i) }, (_, k) => i + k);
    yield toSftBatch(packed ? selectRows(packed, rows) : padPieces(rows.map((r) => pieces[r]), t, c));
  }
}
