import { telemetryProtoType } from '@dmp/contracts';

/**
 * `DevicePayload` (telemetry.proto) as the plain object shape of `devicePayloadSchema`, so both wire
 * formats go through the same validation. proto3 scalars have no presence: an empty `device_id` or
 * `traceparent` and a zero `seq` mean "not sent".
 */
export type ProtobufDecoder = (payload: Buffer) => Record<string, unknown>;

interface DecodedMetricValue {
  value?: 'number' | 'flag' | 'text';
  number?: number;
  flag?: boolean;
  text?: string;
}
interface DecodedDevicePayload {
  deviceId?: string;
  messageId?: string;
  ts?: number;
  seq?: number;
  metrics?: Record<string, DecodedMetricValue>;
  traceparent?: string;
}

export function createProtobufDecoder(): ProtobufDecoder {
  const type = telemetryProtoType('DevicePayload');
  return (payload) => {
    const decoded = type.toObject(type.decode(payload), {
      longs: Number,
      oneofs: true,
    }) as DecodedDevicePayload;
    const result: Record<string, unknown> = {
      messageId: decoded.messageId ?? '',
      ts: decoded.ts ?? 0,
      metrics: Object.fromEntries(
        Object.entries(decoded.metrics ?? {}).map(([name, v]) => [name, metricValue(v)]),
      ),
    };
    if (decoded.deviceId) result.deviceId = decoded.deviceId;
    if (decoded.seq) result.seq = decoded.seq;
    if (decoded.traceparent) result.traceparent = decoded.traceparent;
    return result;
  };
}

/** The oneof's value; `undefined` (rejected by the schema) when the device set none. */
function metricValue(v: DecodedMetricValue): number | boolean | string | undefined {
  switch (v.value) {
    case 'number':
      return v.number;
    case 'flag':
      return v.flag;
    case 'text':
      return v.text;
    default:
      return undefined;
  }
}
