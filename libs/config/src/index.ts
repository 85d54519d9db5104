export * from './env';
export * from './secrets';
export * from './sections';
export * from './cleaning';
