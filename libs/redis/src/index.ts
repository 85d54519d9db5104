export * from './redis.module';
export * from './scripts';
