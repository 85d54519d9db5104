export * from './redis.module';
export * from './scripts';
export * from './subscription';
