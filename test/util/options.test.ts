import { strict as assert } from 'assert';
import { checkOptions, editDistance, nearestOption, withDefaults } from '../../src/util/options';
import { trainConfigKeys, trainDefaults, type TrainConfig } from '../../src/train/trainer';
import { pretrainDefaults, type PretrainConfig } from '../../src/train/pretrain';
import { sftDefaults, type SftConfig } from '../../src/train/sft';
import { dpoDefaults, type DpoConfig } from '../../src/rlhf/dpo';
import { rewardDefaults, type RewardConfig } from '../../src/rlhf/reward';
import { ppoDefaults, type PpoConfig } from '../../src/rlhf/ppo';
import { loraDefaults, type LoraConfig } from '../../src/peft/lora';
import { loraMoeDefaults, type LoraMoeConfig } from '../../src/peft/moe';
import { ia3Defaults, type Ia3Config } from '../../src/peft/ia3';
import { freezeDefaults, type FreezeConfig } from '../../src/train/freeze';
import { ewcDefaults, l2spDefaults, type EwcConfig, type L2spConfig } from '../../src/train/regularize';
import { generateDefaults, type GenerateOptions } from '../../src/model/generate';
import { batchDefaults, type BatchConfig } from '../../src/data/batches';
import { generationEvalDefaults, type GenerationEvalOptions } from '../../src/eval/metrics';
import { trackKeys, type TrackConfig } from '../../src/lab/lab';
import { loadTableOptionKeys, type LoadTableOptions } from '../../src/data/load';
import { validateOptionKeys, type ValidateOptions } from '../../src/data/formats';
import { corpusLoadOptionKeys, type CorpusLoadOptions } from '../../src/data/corpus';
import { tokenizeDefaults, tokenizePreferenceRows, tokenizeRows, type TokenizeConfig } from '../../src/data/tokenize';
import { AdamW } from '../../src/train/optimizer';
import type { Tokenizer } from '../../src/tokenizer/tokenizer';

// Every field of a config, checked complete and exact by the compiler (a Record over keyof C).
const fields = <C>(r: Record<keyof C, true>): string[] => Object.keys(r).sort();
const union = (...lists: (readonly string[] | object)[]) => [...new Set(lists.flatMap((l) => (Array.isArray(l) ? l : Object.keys(l))))].sort();

describe('util/options', () => {
  it('withDefaults merges like a spread and refuses unknown names with the nearest valid one', () => {
    assert.deepEqual(withDefaults({ a: 1, b: 2 }, { b: 3 }, 'x'), { a: 1, b: 3 });
    assert.deepEqual(withDefaults({ a: 1 }, undefined, 'x'), { a: 1 });
    assert.deepEqual(withDefaults(trainDefaults, { outDir: 'runs/x' }, 'train', ['outDir']).outDir, 'runs/x');
    assert.throws(() => withDefaults(trainDefaults, { maxStep: 10 } as object, 'sft'), { message: 'sft: unknown option "maxStep"; did you mean "maxSteps"?' });
    assert.throws(() => withDefaults(loraDefaults, { rank: 8 } as object, 'lora'), { message: 'lora: unknown option "rank"; did you mean "r"?' });
    assert.throws(() => withDefaults(loraDefaults, { lora_alpha: 16 } as object, 'lora'), /"lora_alpha"; did you mean "alpha"\?/);
    assert.throws(() => withDefaults(loraDefaults, { loraAlpha: 16 } as object, 'lora'), /"loraAlpha"; did you mean "alpha"\?/);
    assert.throws(() => withDefaults(trainDefaults, { learning_rate: 1e-3 } as object, 'train'), /"learning_rate"; did you mean "lr"\?/);
    assert.throws(() => withDefaults(trainDefaults, { max_steps: 1 } as object, 'train'), /"max_steps"; did you mean "maxSteps"\?/);
    assert.throws(() => withDefaults(trainDefaults, { WarmupSteps: 1 } as object, 'train'), /did you mean "warmupSteps"\?/);
    // Nothing near: the valid names are listed instead of a wild guess.
    assert.throws(() => withDefaults({ r: 8, alpha: 16 }, { zzzzzz: 1 } as object, 'lora'), { message: 'lora: unknown option "zzzzzz"; valid options: alpha, r' });
    assert.throws(() => checkOptions(5, ['a'], 'x'), { name: 'TypeError', message: 'x: options must be an object, got number' });
    assert.throws(() => checkOptions([1], ['a'], 'x'), /got an array/);
  });

  it('plain functions check too: tokenizeRows, tokenizePreferenceRows, AdamW', () => {
    const tok = {} as Tokenizer; // never reached: the option check comes first
    assert.throws(() => tokenizeRows([], tok, { max_length: 8 } as object), /tokenizeRows: unknown option "max_length"; did you mean "maxLength"\?/);
    assert.throws(() => tokenizePreferenceRows([], tok, { truncate: 'left' } as object), /tokenizePreferenceRows: unknown option "truncate"; did you mean "truncation"\?/);
    assert.deepEqual(tokenizeRows([], tok, { maxLength: 8 }).report.rows, 0);
    assert.throws(() => new AdamW(new Map(), { weight_decay: 0.1 } as object), /AdamW: unknown option "weight_decay"; did you mean "weightDecay"\?/);
  });

  it('nearestOption and editDistance', () => {
    assert.equal(editDistance('kitten', 'sitting'), 3);
    assert.equal(editDistance('', 'abc'), 3);
    assert.equal(editDistance('txet', 'text'), 1);
    assert.equal(editDistance('ca', 'abc'), 3);
    assert.equal(nearestOption('bathSize', ['batchSize', 'seqLen']), 'batchSize');
    assert.equal(nearestOption('r', ['alpha', 'dropout']), undefined);
    assert.equal(nearestOption('epoch', ['epochs', 'lr']), 'epochs');
  });

  // The valid-key set each call site uses must be the config's whole interface, or a valid option would be refused.
  it('the valid names of each checked config are exactly its fields', () => {
    assert.deepEqual(union(trainConfigKeys), fields<TrainConfig>({ lr: true, maxSteps: true, gradAccumSteps: true, schedule: true, warmupSteps: true, minLrRatio: true, weightDecay: true, beta1: true, beta2: true, eps: true, maxGradNorm: true, evalEvery: true, earlyStopPatience: true, earlyStopThreshold: true, checkpointEvery: true, outDir: true, seed: true, profileMemory: true, gradientCheckpointing: true }));
    const train = { lr: true, maxSteps: true, gradAccumSteps: true, schedule: true, warmupSteps: true, minLrRatio: true, weightDecay: true, beta1: true, beta2: true, eps: true, maxGradNorm: true, evalEvery: true, earlyStopPatience: true, earlyStopThreshold: true, checkpointEvery: true, outDir: true, seed: true, profileMemory: true, gradientCheckpointing: true } as const;
    assert.deepEqual(union(pretrainDefaults, trainConfigKeys), fields<PretrainConfig>({ ...train, seqLen: true, batchSize: true, replay: true, evalDocs: true, maxEvalWindows: true, epochs: true }));
    assert.deepEqual(union(sftDefaults, trainConfigKeys), fields<SftConfig>({ ...train, completionOnlyLoss: true, assistantOnlyLoss: true, template: true, packing: true, maxLength: true, batchSize: true, evalRows: true, epochs: true }));
    assert.deepEqual(union(dpoDefaults, trainConfigKeys), fields<DpoConfig>({ ...train, beta: true, lossType: true, labelSmoothing: true, maxLength: true, batchSize: true, precomputeRefLogProbs: true, reference: true, evalRows: true, evalOnStart: true }));
    assert.deepEqual(union(rewardDefaults, trainConfigKeys), fields<RewardConfig>({ ...train, maxLength: true, batchSize: true, centerRewardsCoefficient: true, disableDropout: true, evalRows: true, epochs: true }));
    assert.deepEqual(union(ppoDefaults), fields<PpoConfig>({
      maxSteps: true, totalEpisodes: true, batchSize: true, numMiniBatches: true, numPpoEpochs: true, responseLength: true, temperature: true, topK: true, topP: true, stopToken: true, missingEosPenalty: true, klCoef: true, klEstimator: true, cliprange: true, cliprangeValue: true, vfCoef: true, gamma: true, lam: true, whitenRewards: true, whitenAdvantages: true, normalizeScores: true, lr: true, schedule: true, warmupSteps: true, beta1: true, beta2: true, eps: true, weightDecay: true, maxGradNorm: true, valueHeadStd: true, seed: true, logSamples: true, gradientCheckpointing: true,
    }));
    assert.deepEqual(union(loraDefaults), fields<LoraConfig>({ r: true, alpha: true, dropout: true, targetModules: true, useRslora: true, bias: true, initLoraWeights: true, seed: true, useDora: true }));
    assert.deepEqual(union(loraMoeDefaults), fields<LoraMoeConfig>({ experts: true, r: true, alpha: true, dropout: true, targetModules: true, routing: true, topK: true, routerInit: true, useRslora: true, routerAuxLossCoef: true, seed: true }));
    assert.deepEqual(union(ia3Defaults), fields<Ia3Config>({ targetModules: true, feedforwardModules: true }));
    assert.deepEqual(union(freezeDefaults), fields<FreezeConfig>({ lastLayers: true, includeHead: true, includeNorms: true, includeEmbeddings: true }));
    assert.deepEqual(union(l2spDefaults), fields<L2spConfig>({ alpha: true }));
    assert.deepEqual(union(ewcDefaults), fields<EwcConfig>({ lambda: true, normalize: true, seqLen: true, samples: true }));
    assert.deepEqual(union(generateDefaults), fields<GenerateOptions>({ maxNewTokens: true, doSample: true, temperature: true, topK: true, topP: true, stopTokens: true, seed: true, useCache: true }));
    assert.deepEqual(union(batchDefaults), fields<BatchConfig>({ batchSize: true, packing: true, seqLen: true, padToMultipleOf: true, overflow: true, appendEos: true, seed: true }));
    assert.deepEqual(union(generationEvalDefaults), fields<GenerationEvalOptions>({ maxNewTokens: true, seed: true, format: true, stopTokens: true }));
    assert.deepEqual(union(tokenizeDefaults), fields<TokenizeConfig>({ maxLength: true, truncation: true, completionOnlyLoss: true, assistantOnlyLoss: true, template: true, addBos: true, parseSpecial: true }));
    assert.deepEqual(union(trackKeys), fields<TrackConfig>({ sets: true, every: true, windows: true, tasks: true, taskLimit: true }));
    const mapping = { text: true, prompt: true, completion: true, chosen: true, rejected: true, messages: true } as const;
    const load = { format: true, badRows: true, provenance: true, json: true, separator: true, ...mapping } as const;
    assert.deepEqual(union(loadTableOptionKeys), fields<LoadTableOptions>(load));
    assert.deepEqual(union(validateOptionKeys), fields<ValidateOptions>({ source: true, skipBad: true, roles: true }));
    assert.deepEqual(union(corpusLoadOptionKeys), fields<CorpusLoadOptions>({ ...load, skipBad: true, roles: true, validate: true, name: true }));
  });
});
