export * from './reward';
export * from './ppo';
export * from './sentiment';
export * from './dpo';
export * from './frontier';
