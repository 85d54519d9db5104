import { errorMessage } from '@dmp/contracts';
import {
  context,
  createContextKey,
  propagation,
  ROOT_CONTEXT,
  trace,
  TraceFlags,
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

/**
 * The MQTT 5 user properties that carry a trace context, or none at all: Mosquitto 2.0 never
 * acknowledges a QoS 1 PUBLISH whose User Property list is present but empty (tracing off), so an
 * empty carrier must not become an empty `userProperties`.
 */
export function mqttTraceProperties(carrier: TraceCarrier): { userProperties?: Record<string, string> } {
  const userProperties: Record<string, string> = {};
  if (carrier.traceparent) userProperties.traceparent = carrier.traceparent;
  if (carrier.tracestate) userProperties.tracestate = carrier.tracestate;
  return Object.keys(userProperties).length > 0 ? { userProperties } : {};
}

export function extractTraceContext(
  carrier: TraceCarrier | undefined,
  base: Context = context.active(),
): Context {
  return carrier?.traceparent ? propagation.extract(base, carrier) : base;
}

const DEVICE_PARENT = createContextKey('dmp.device-trace-parent');

/**
 * The trace context a device sent, at the platform's edge. The device's trace id is kept, so that the
 * platform's spans join the device's trace when they are recorded; but whether they are recorded is
 * the platform's decision, not the device's: the context is marked, and DMP's sampler (telemetry.ts)
 * ignores the sampled flag of a marked remote parent and applies its own head sampling (the trace-id
 * ratio) instead. A device cannot force every message of it into the traces, nor keep them out.
 */
export function extractDeviceTraceContext(
  carrier: TraceCarrier | undefined,
  base: Context = ROOT_CONTEXT,
): Context {
  if (!carrier?.traceparent) return base;
  const extracted = propagation.extract(base, carrier);
  return trace.getSpanContext(extracted) ? extracted.setValue(DEVICE_PARENT, true) : extracted;
}

/** Whether a span started in `ctx` would have a device's context as its parent (see above). */
export function hasDeviceParent(ctx: Context): boolean {
  return ctx.getValue(DEVICE_PARENT) === true && trace.getSpanContext(ctx)?.isRemote === true;
}

/**
 * A device's trace context with the sampled flag cleared, for a hop that has no sampler of its own to
 * decide (tracing off in this process): the next service then joins the device's trace id without
 * taking the device's word that it must be recorded.
 */
export function withoutSampledFlag(carrier: TraceCarrier): TraceCarrier {
  const match = /^([\da-f]{2}-[\da-f]{32}-[\da-f]{16}-)([\da-f]{2})(.*)$/i.exec(carrier.traceparent ?? '');
  if (!match) return {};
  const flags = (Number.parseInt(match[2], 16) & ~TraceFlags.SAMPLED).toString(16).padStart(2, '0');
  return { ...carrier, traceparent: `${match[1]}${flags}${match[3]}` };
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
