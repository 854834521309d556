/** Evaluation: held-out metrics, question→answer scoring, generation samples and forgetting tracking. */
export * from './metrics';
export * from './forgetting';
export * from './runs';
export { tensorboard } from './tensorboard';
