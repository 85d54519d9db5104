import { join } from 'node:path';
import protobuf from 'protobufjs';

/** Absolute path of the telemetry `.proto`, shipped next to the compiled library. */
export const TELEMETRY_PROTO_PATH = join(__dirname, 'proto', 'telemetry.proto');
export const TELEMETRY_PROTO_PACKAGE = 'dmp.telemetry.v1';

let telemetryRoot: protobuf.Root | undefined;
const telemetryProto = () => (telemetryRoot ??= protobuf.loadSync(TELEMETRY_PROTO_PATH));

/** A message type of telemetry.proto, for protobufjs (the file is parsed once per process). */
export const telemetryProtoType = (name: 'DevicePayload' | 'Telemetry'): protobuf.Type =>
  telemetryProto().lookupType(`${TELEMETRY_PROTO_PACKAGE}.${name}`);

/** An enum of telemetry.proto: its values by name. */
export const telemetryProtoEnum = (name: 'Kind'): Record<string, number> =>
  telemetryProto().lookupEnum(`${TELEMETRY_PROTO_PACKAGE}.${name}`).values;
