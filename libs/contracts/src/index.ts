export * from './telemetry';
export * from './telemetry-pack';
export * from './topics';
export * from './errors';
export * from './proto';
export * from './dead-letter';
export * from './devices';
export * from './alarms';
