/**
 * @dmp/rules — pure functions shared by dmp-kernel, the CLI (`dmp rules test`, `dmp dead-letters replay`)
 * and the bench: the rule engine (compile, evaluate), the normalization of metrics by product models,
 * and the outbox entries rules oblige the kernel to carry out (their Redis layout and retry policy).
 */
export * from './engine';
export * from './command-lifecycle';
export * from './outbox';
export * from './outbox-policy';
export * from './product-model';
export * from './units';
