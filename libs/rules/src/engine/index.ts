export * from './budget';
export * from './cel';
export * from './duration';
export * from './evaluate';
export * from './loader';
export * from './regex';
export * from './ruleset';
export * from './source';
