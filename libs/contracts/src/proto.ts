import { join } from 'node:path';

/** Absolute path of the telemetry `.proto`, shipped next to the compiled library. */
export const TELEMETRY_PROTO_PATH = join(__dirname, 'proto', 'telemetry.proto');
export const TELEMETRY_PROTO_PACKAGE = 'dmp.telemetry.v1';
