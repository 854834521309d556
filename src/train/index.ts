export { Trainer, NonFiniteLossError, trainDefaults, validateTrainConfig } from './trainer';
export type { TrainConfig, Objective, BatchSource, StepMetrics, EvalMetrics, TrainResult, TrainerEvents, TrainerOptions, TrainerState, CheckpointIO } from './trainer';
export { AdamW, adamWDefaults, decays } from './optimizer';
export type { AdamWOptions } from './optimizer';
export { learningRateAt } from './schedule';
export type { ScheduleName, ScheduleOptions } from './schedule';
export { causalLmObjective, maskedCrossEntropy, TokenWindows, evalWindows, evaluateLm, tokenStream } from './causal-lm';
export type { LmBatch } from './causal-lm';
