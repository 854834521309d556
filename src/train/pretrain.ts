/**
 * Domain-adaptive continued pretraining (DAPT; Gururangan et al., "Don't Stop Pretraining",
 * arXiv 2004.10964): keep training a base model with its causal-LM loss on in-domain text. Optional
 * replay mixes a share of general-domain text back in, a standard guard against forgetting
 * (experience replay; cf. Ibrahim et al., "Simple and Scalable Strategies to Continually Pre-train
 * Large Language Models", arXiv 2403.08763).
 */
import type { CausalLM } from '../model/transformer';
import { Rng } from '../util/rng';
import { TokenWindows, causalLmObjective, evalWindows, evaluateLm, tokenStream } from './causal-lm';
import { Trainer, TrainConfig, TrainResult, TrainerOptions, trainConfigKeys, trainDefaults } from './trainer';
import { withDefaults } from '../util/options';
import { stepsForEpochs } from './schedule';
import type { LmBatch } from './causal-lm';

/** The tokenizer surface continued pretraining needs. */
export interface DocTokenizer {
  encode(text: string, o: { addEos: boolean; parseSpecial: boolean }): number[];
}

/** General-domain text replayed during continued pretraining. */
export interface ReplayConfig {
  /** General-domain documents (or an already tokenized stream). */
  docs: readonly string[] | ArrayLike<number>;
  /** Share of training tokens taken from `docs`, in [0, 1). */
  fraction: number;
}

/** Options of {@link continuedPretraining}: the shared {@link TrainConfig} plus data knobs. */
export interface PretrainConfig extends TrainConfig {
  /** Window length in tokens; `null` = the model's context length. */
  seqLen: number | null;
  /** Windows per micro-batch (HF `per_device_train_batch_size`: 8). */
  batchSize: number;
  /** Optional general-domain replay. */
  replay: ReplayConfig | null;
  /** Held-out documents (or stream) evaluated with the same windows; `null` = no eval. */
  evalDocs: readonly string[] | ArrayLike<number> | null;
  /** Most held-out windows evaluated (`null` = all). */
  maxEvalWindows: number | null;
  /** Passes over the training windows (HF `num_train_epochs`); sets `maxSteps` unless that is given too. */
  epochs: number | null;
}

/**
 * Defaults. lr 1e-3 with linear decay: a continued-pretraining rate sized for the tiny shipped base
 * (DAPT used the base's own peak rate; tiny models tolerate far larger rates than HF's 5e-5).
 */
export const pretrainDefaults: Readonly<Omit<PretrainConfig, keyof TrainConfig> & Partial<TrainConfig>> = Object.freeze({
  lr: 1e-3, maxSteps: 100, warmupSteps: 0, seqLen: null, batchSize: 8, replay: null, evalDocs: null, maxEvalWindows: null, epochs: null,
});

/** What {@link continuedPretraining} returns: the trainer's result plus data statistics. */
export interface PretrainResult extends TrainResult {
  /** Tokens of domain text in the training stream. */
  domainTokens: number;
  /** Tokens of replayed general text in the training stream. */
  replayTokens: number;
  /** Windows per epoch. */
  windows: number;
}

function isStream(x: readonly string[] | ArrayLike<number>): x is ArrayLike<number> {
  return !Array.isArray(x) || (x.length > 0 && typeof x[0] === 'number');
}

/** Documents as lists of token ids (a stream is one "document"). */
function docIds(tok: DocTokenizer, x: readonly string[] | ArrayLike<number>): number[][] {
  if (isStream(x)) return [Array.from(x)];
  return (x as readonly string[]).filter((d) => d.length > 0).map((d) => tokenStream(tok, [d]));
}

/**
 * The training stream: domain documents and, with replay, general documents whose tokens make up
 * `fraction` of the total (G = D·f/(1−f), whole documents, the last one cut), interleaved in a seeded
 * order so every window mixes both at about the requested rate.
 */
export function replayStream(tok: DocTokenizer, domain: readonly string[] | ArrayLike<number>, replay: ReplayConfig | null, seed = 42): { tokens: number[]; domainTokens: number; replayTokens: number } {
  const dom = docIds(tok, domain);
  const domainTokens = dom.reduce((s, d) => s + d.length, 0);
  if (!replay || replay.fraction === 0) return { tokens: dom.flat(), domainTokens, replayTokens: 0 };
  const f = replay.fraction;
  if (!(f >= 0 && f < 1)) throw new RangeError(`replay.fraction must be in [0, 1) (got ${f})`);
  const want = Math.round((domainTokens * f) / (1 - f));
  const pool = new Rng(seed * 7 + 1).shuffle(docIds(tok, replay.docs));
  const gen: number[][] = [];
  let got = 0;
  for (let i = 0; got < want && pool.length > 0; i = (i + 1) % pool.length) {
    const d = pool[i].slice(0, want - got);
    gen.push(d);
    got += d.length;
  }
  const all = new Rng(seed * 7 + 2).shuffle([...dom, ...gen]);
  return { tokens: all.flat(), domainTokens, replayTokens: got };
}

/**
 * Continues pretraining `model` on domain documents with the causal-LM loss on shuffled
 * non-overlapping windows, optionally replaying general text, and evaluating held-out windows.
 *
 * @example
 * const { model, tokenizer } = await base('tiny-llama');
 * const r = await continuedPretraining(model, tokenizer, textDocuments('datasets/domain/train.txt', '\n\n\n'), {
 *   maxSteps: 200, replay: { docs: generalDocs, fraction: 0.25 }, evalDocs: heldOut,
 * });
 */
export async function continuedPretraining(
  model: CausalLM, tokenizer: DocTokenizer, docs: readonly string[] | ArrayLike<number>, config: Partial<PretrainConfig> = {},
  options: TrainerOptions<LmBatch> & { onTrainer?: (t: Trainer<LmBatch>) => void } = {},
): Promise<PretrainResult> {
  const c = withDefaults(pretrainDefaults, config, 'pretrain', trainConfigKeys);
  // Prefix / prompt tuning take positions of the context.
  const room = model.config.contextLength - model.reservedPositions();
  const seqLen = c.seqLen ?? room;
  if (seqLen > room) throw new RangeError(`seqLen ${seqLen} exceeds the model's context ${room}${room < model.config.contextLength ? ` (${model.config.contextLength} less ${model.config.contextLength - room} taken by prefix/virtual tokens)` : ''}`);
  const { tokens, domainTokens, replayTokens } = replayStream(tokenizer, docs, c.replay, c.seed ?? trainDefaults.seed);
  const data = new TokenWindows(tokens, seqLen, c.batchSize, c.seed ?? trainDefaults.seed, 'continued-pretraining data');
  let evaluate = options.evaluate;
  if (!evaluate && c.evalDocs) {
    const evalIds = docIds(tokenizer, c.evalDocs).flat();
    const n = c.maxEvalWindows;
    const cut = n === null ? evalIds : evalIds.slice(0, n * seqLen + 1);
    evaluate = async (m) => evaluateLm(m, evalWindows(cut, seqLen, c.batchSize, 'held-out documents'));
  }
  if (c.epochs !== null && config.maxSteps === undefined) c.maxSteps = stepsForEpochs(c.epochs, data.windows, c.batchSize, c.gradAccumSteps ?? 1);
  const { seqLen: _s, batchSize: _b, replay: _r, evalDocs: _e, maxEvalWindows: _w, epochs: _n, ...train } = c;
  const trainer = new Trainer(model, causalLmObjective, data, train, { ...options, evaluate });
  options.onTrainer?.(trainer);
  try {
    const result = await trainer.train();
    return { ...result, domainTokens, replayTokens, windows: data.windows };
  } finally {
    trainer.dispose();
  }
}
