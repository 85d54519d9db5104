import { errorMessage } from '@dmp/contracts';
import {
  context,
  propagation,
  trace,
  type Attributes,
  type Context,
  type Link,
  type Span,
  type SpanOptions,
  type Tracer,
} from '@opentelemetry/api';

/** W3C trace context as it travels in MQTT 5 user properties and RocketMQ message properties. */
export interface TraceCarrier {
  traceparent?: string;
  tracestate?: string;
}

export function injectTraceContext(ctx: Context = context.active()): TraceCarrier {
  const carrier: TraceCarrier = {};
  propagation.inject(ctx, carrier);
  return carrier;
}

export function extractTraceContext(
  carrier: TraceCarrier | undefined,
  base: Context = context.active(),
): Context {
  return carrier?.traceparent ? propagation.extract(base, carrier) : base;
}

/** A span link to the producer of a message, for batch spans (one ClickHouse insert, many messages). */
export function linkTo(carrier: TraceCarrier | undefined): Link | undefined {
  if (!carrier?.traceparent) return undefined;
  const spanContext = trace.getSpanContext(propagation.extract(context.active(), carrier));
  return spanContext ? { context: spanContext } : undefined;
}

/** Records an error on a span and marks it failed. */
export function recordFailure(span: Span, error: unknown): void {
  span.recordException(error instanceof Error ? error : new Error(String(error)));
  span.setStatus({ code: 2, message: errorMessage(error) });
}

/**
 * Starts a span and gives it `attributes()` only if it records. Most per-message spans are not sampled,
 * and building and sanitizing their attributes was a good share of tracing's cost per message. Samplers
 * decide without them (DMP's — parent-based, trace-id ratio — never read attributes).
 */
export function startSpanLazily(
  tracer: Tracer,
  name: string,
  options: SpanOptions,
  parent: Context,
  attributes: () => Attributes,
): Span {
  const span = tracer.startSpan(name, options, parent);
  if (span.isRecording()) span.setAttributes(attributes());
  return span;
}
