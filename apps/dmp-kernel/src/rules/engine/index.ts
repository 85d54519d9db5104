export * from './cel';
export * from './duration';
export * from './evaluate';
export * from './loader';
export * from './ruleset';
export * from './source';
