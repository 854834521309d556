/** Evaluation: held-out metrics, question→answer scoring, generation samples, forgetting tracking and lm-eval-style tasks. */
export * from './metrics';
export * from './forgetting';
export * from './runs';
export { tensorboard } from './tensorboard';
export * from './bias';
export * from './drift';
export * from './rouge';
export {
  Task, task, taskKinds, isTasks, taskFromTable, evaluateTasks, taskEvalDefaults, taskScoreRows, taskTable, countWords, countBytes,
  loglikelihoods, rollingLoglikelihoods, greedyUntil, encodePair, requestDefaults,
  wilsonInterval, bootstrapInterval, meanStderr, normalQuantile,
  lastWordTask, realContinuationTask, domainCompletionTask, shippedTasks, shippedTaskDefaults,
} from './tasks';
export type {
  TaskKind, TaskSpec, TableTaskConfig, TaskEvalOptions, TaskScore, TaskScoreRow, TaskResult, DocResult, RequestOptions, Loglikelihood,
  Interval, ShippedTaskOptions, LastWordDoc, ChoiceDoc,
} from './tasks';
