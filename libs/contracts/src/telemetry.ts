import { z } from 'zod';

/** Identifiers that are safe in MQTT topics, RocketMQ keys and ClickHouse: no wildcards, no slashes. */
export const DEVICE_ID_PATTERN = /^[A-Za-z0-9_.:-]{1,64}$/;
export const MESSAGE_ID_PATTERN = /^[A-Za-z0-9_.:-]{1,128}$/;
export const METRIC_NAME_PATTERN = /^[A-Za-z][A-Za-z0-9_.]{0,63}$/;
export const MAX_METRICS = 256;
export const MAX_TEXT_VALUE_LENGTH = 256;

export const telemetryKinds = ['telemetry', 'event', 'snapshot'] as const;
export type TelemetryKind = (typeof telemetryKinds)[number];

/** A UTF-16 surrogate without its pair: JSON can carry one (`"\ud800"`), UTF-8 cannot. */
const LONE_SURROGATE = /\p{Cs}/u;

/** Text of at most MAX_TEXT_VALUE_LENGTH code points (not UTF-16 units, not bytes), all of it Unicode. */
export const metricValueSchema = z.union([
  z.number().refine(Number.isFinite, 'must be a finite number'),
  z.boolean(),
  z
    .string()
    .max(MAX_TEXT_VALUE_LENGTH)
    .refine((text) => !LONE_SURROGATE.test(text), 'must be Unicode text (a lone surrogate is not)'),
]);
export type MetricValue = z.infer<typeof metricValueSchema>;

/**
 * zod's record skips a `__proto__` key (its guard against prototype pollution) rather than checking it:
 * the metric would vanish and the rest be stored. It is no valid metric name, so it is refused first.
 */
const withoutProtoKey = z
  .unknown()
  .refine((value) => typeof value !== 'object' || value === null || !Object.hasOwn(value, '__proto__'), {
    message: 'invalid metric name',
    path: ['__proto__'],
    abort: true,
  });

const metricsSchema = withoutProtoKey.pipe(
  z
    .record(z.string().regex(METRIC_NAME_PATTERN, 'invalid metric name'), metricValueSchema)
    .refine((m) => Object.keys(m).length <= MAX_METRICS, `at most ${MAX_METRICS} metrics`),
);

const epochMillis = z.number().int().positive().max(Number.MAX_SAFE_INTEGER);

/** What a device publishes as JSON on `devices/{deviceId}/{kind}`. */
export const devicePayloadSchema = z.strictObject({
  deviceId: z.string().regex(DEVICE_ID_PATTERN).optional(),
  messageId: z.string().regex(MESSAGE_ID_PATTERN),
  ts: epochMillis,
  seq: z.number().int().nonnegative().max(Number.MAX_SAFE_INTEGER).optional(),
  metrics: metricsSchema,
  traceparent: z.string().max(128).optional(),
});
export type DevicePayload = z.infer<typeof devicePayloadSchema>;

/** One accepted device message, as dmp-mqtt hands it to dmp-kernel. */
export const telemetryEnvelopeSchema = z.object({
  deviceId: z.string().regex(DEVICE_ID_PATTERN),
  messageId: z.string().regex(MESSAGE_ID_PATTERN),
  kind: z.enum(telemetryKinds),
  ts: epochMillis,
  seq: z.number().int().nonnegative().optional(),
  metrics: metricsSchema,
  receivedAt: epochMillis,
});
export type TelemetryEnvelope = z.infer<typeof telemetryEnvelopeSchema>;

/** A telemetry message after the kernel normalized and enriched it: the RocketMQ message body. */
export const normalizedTelemetrySchema = telemetryEnvelopeSchema.extend({
  tenantId: z.string().default(''),
  productId: z.string().default(''),
  siteId: z.string().default(''),
});
export type NormalizedTelemetry = z.infer<typeof normalizedTelemetrySchema>;
