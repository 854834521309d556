export * from './reward';
export * from './ppo';
export * from './sentiment';
export * from './dpo';
export * from './frontier';
export * from './advantages';
export * from './rollout';
