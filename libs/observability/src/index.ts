export * from './telemetry';
export * from './trace-context';
export * from './metrics.registry';
export * from './health.registry';
export * from './observability.module';
export * from './bootstrap';
