export * from './batcher';
export * from './split-refused';
