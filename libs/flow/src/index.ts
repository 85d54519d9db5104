export * from './abort-watch';
export * from './backoff';
export * from './batcher';
export * from './keyed-fifo';
export * from './split-refused';
