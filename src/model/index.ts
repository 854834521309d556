export * from './config';
export { CausalLM } from './transformer';
export type { ForwardOptions, LinearHook, EmbeddingHook, Parameter } from './transformer';
export { KVCache } from './attention';
export { generate, generateDefaults, sampleToken } from './generate';
export type { GenerateOptions } from './generate';
