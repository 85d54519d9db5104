export * from './clickhouse.repository';
export * from './clickhouse.module';
export * from './errors';
export * from './server-version';
export * from './sql';
export * from './tables';
export * from './migrations';
export * from './retention';
