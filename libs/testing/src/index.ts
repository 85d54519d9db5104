export * from './wait';
export * from './app-process';
export * from './stack';
export * from './quiet';
export * from './minute-aggregates';
export * from './telemetry-entries';
export * from './emqx-http-auth';
export * from './admin-api';
