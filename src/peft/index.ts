export * from './peft';
