import {
  type MetricValue,
  type MetricValueMessage,
  RejectCode,
  type TelemetryEnvelope,
  telemetryEnvelopeSchema,
  type TelemetryKind,
  type TelemetryMessage,
} from '@dmp/contracts';

export type MappingResult =
  { ok: true; envelope: TelemetryEnvelope } | { ok: false; code: string; message: string };

const kinds: Record<string, TelemetryKind> = {
  KIND_TELEMETRY: 'telemetry',
  KIND_EVENT: 'event',
  KIND_SNAPSHOT: 'snapshot',
};

/**
 * The gRPC `Telemetry` message as a validated TelemetryEnvelope: kind enum → name, each metric's
 * oneof → number | boolean | string. `seq` 0 means "not sent" (proto3 cannot tell them apart);
 * a missing `received_at` becomes now.
 */
export function toTelemetryEnvelope(message: TelemetryMessage, now = Date.now()): MappingResult {
  const kind = kinds[message.kind];
  if (!kind) return invalid(`kind: ${message.kind || 'missing'} is not telemetry, event or snapshot`);

  const metrics: Record<string, MetricValue> = {};
  for (const [name, value] of Object.entries(message.metrics ?? {})) {
    const converted = metricValue(value);
    if (converted === undefined) return invalid(`metrics.${name}: no value set`);
    metrics[name] = converted;
  }

  const parsed = telemetryEnvelopeSchema.safeParse({
    deviceId: message.deviceId,
    messageId: message.messageId,
    kind,
    ts: message.ts,
    ...(message.seq ? { seq: message.seq } : {}),
    metrics,
    receivedAt: message.receivedAt || now,
  });
  if (parsed.success) return { ok: true, envelope: parsed.data };
  return invalid(
    parsed.error.issues
      .slice(0, 3)
      .map((issue) => `${issue.path.join('.') || 'message'}: ${issue.message}`)
      .join('; '),
  );
}

function metricValue(value: MetricValueMessage | undefined): MetricValue | undefined {
  switch (value?.value) {
    case 'number':
      return value.number;
    case 'flag':
      return value.flag;
    case 'text':
      return value.text;
    default:
      return undefined;
  }
}

const invalid = (message: string): MappingResult => ({ ok: false, code: RejectCode.InvalidPayload, message });
