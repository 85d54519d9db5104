import {
  decodeTelemetryBody,
  TELEMETRY_PACK_FORMAT,
  TelemetryProperty,
  type TelemetryPackEntry,
} from '@dmp/contracts';
import { extractTraceContext, recordFailure, startSpanLazily } from '@dmp/observability';
import { context, ROOT_CONTEXT, SpanKind, trace } from '@opentelemetry/api';
import type { RocketMqMessage } from './rocketmq.context';
import { processAttributes, TRACER_NAME } from './rocketmq.semconv';

const tracer = trace.getTracer(TRACER_NAME);

/** A device message of a telemetry RocketMQ message, not validated yet. */
export type TelemetryEntry = TelemetryPackEntry<unknown>;

/** Whether the message is a pack of device messages (else its body is one NormalizedTelemetry). */
export const isTelemetryPack = (message: RocketMqMessage): boolean =>
  message.properties[TelemetryProperty.format] === TELEMETRY_PACK_FORMAT;

/** The message's device messages (see `decodeTelemetryBody`); throws an Error saying what is wrong. */
export const telemetryEntriesOf = (message: RocketMqMessage): TelemetryEntry[] =>
  decodeTelemetryBody(message.body, message.properties);

/**
 * Runs `handle` for one device message in that message's own trace. A single message is already
 * there (the consumer's `process` span continues it); a pack entry gets a `process {topic}` CONSUMER
 * span of its own, child of the entry's `create` span and linked to the pack's `process` span (the
 * active one), so operators follow one device message across every hop.
 */
export async function processTelemetryEntry<R>(
  message: RocketMqMessage,
  entry: TelemetryEntry,
  consumerGroup: string,
  handle: () => Promise<R>,
): Promise<R> {
  if (!isTelemetryPack(message)) return handle();
  const pack = trace.getSpanContext(context.active());
  const parent = extractTraceContext(entry, ROOT_CONTEXT);
  const span = startSpanLazily(
    tracer,
    `process ${message.topic}`,
    { kind: SpanKind.CONSUMER, ...(pack ? { links: [{ context: pack }] } : {}) },
    parent,
    () => processAttributes(message, consumerGroup),
  );
  try {
    return await context.with(trace.setSpan(parent, span), handle);
  } catch (error) {
    recordFailure(span, error);
    throw error;
  } finally {
    span.end();
  }
}
