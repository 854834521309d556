export * from './peft';
export * from './bottleneck';
export * from './ia3';
export * from './lora';
export * from './io';
export * from './prefix';
export * from './prompt';
export * from './moe';
