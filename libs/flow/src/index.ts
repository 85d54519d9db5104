export * from './abort-watch';
export * from './backoff';
export * from './batcher';
export * from './split-refused';
