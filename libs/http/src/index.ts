export * from './admin-token.guard';
export * from './admin-exception.filter';
