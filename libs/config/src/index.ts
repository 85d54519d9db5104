export * from './env';
export * from './sections';
