import {
  extractDeviceTraceContext,
  injectTraceContext,
  startSpanLazily,
  withoutSampledFlag,
  type TraceCarrier,
} from '@dmp/observability';
import { Injectable } from '@nestjs/common';
import {
  ROOT_CONTEXT,
  SpanKind,
  SpanStatusCode,
  trace,
  type Attributes,
  type Context,
  type Span,
} from '@opentelemetry/api';
import type { MqttContext } from '../transport/mqtt.context';
import type { MqttDeliveryEnd, MqttMessage } from '../transport/mqtt-message';

/**
 * The two spans of one device message (OTel messaging conventions; MQTT has no instrumentation):
 *  - `receive devices/+/{channel}` (CLIENT): the broker delivering it; parent = the device's trace context
 *    (its trace id joins the device's trace, but its sampled flag is ignored: the platform's head sampler
 *    decides what is recorded, see extractDeviceTraceContext);
 *  - `process devices/+/{channel}` (CONSUMER), its child: decoding, validation and the hand-off to
 *    dmp-kernel, until the PUBACK. Its context travels to the kernel in `traceparent`/`tracestate`, so the
 *    kernel's span is its child: one trace per message, device → dmp-mqtt → dmp-kernel → …
 *
 * The device's context may sit in the payload (MQTT 3.1.1 devices), known only after decoding; so both
 * spans are started once it is known, with their real start times (arrival and dispatch) — the durations
 * are right, and no span has to change its parent.
 */
@Injectable()
export class MessageTracing {
  private readonly tracer = trace.getTracer('dmp-mqtt');

  start(message: MqttMessage, ctx: MqttContext, device: DeviceTraceInfo): MessageSpans {
    const parent = extractDeviceTraceContext(device.carrier, ROOT_CONTEXT);
    const template = ctx.getSubscription() || message.topic;
    // The identifying attributes on both spans; the descriptive ones once, on the process span (span
    // attributes are a good share of the tracing cost at tens of thousands of spans per second).
    const common = (): Attributes => {
      const attributes: Attributes = {
        'messaging.system': 'mqtt',
        'network.protocol.name': 'mqtt',
        'messaging.destination.name': message.topic,
        'messaging.destination.template': template,
        'messaging.mqtt.qos': message.qos,
      };
      if (device.messageId) attributes['messaging.message.id'] = device.messageId;
      return attributes;
    };

    const receive = startSpanLazily(
      this.tracer,
      `receive ${template}`,
      { kind: SpanKind.CLIENT, startTime: ctx.getReceivedAt() },
      parent,
      () => ({ ...common(), 'messaging.operation.type': 'receive', 'messaging.operation.name': 'receive' }),
    );
    receive.end(ctx.getDispatchedAt());
    const process = startSpanLazily(
      this.tracer,
      `process ${template}`,
      { kind: SpanKind.CONSUMER, startTime: ctx.getDispatchedAt() },
      trace.setSpan(parent, receive),
      () => {
        const attributes: Attributes = {
          ...common(),
          'messaging.operation.type': 'process',
          'messaging.operation.name': 'process',
          'network.protocol.version': '5',
          'messaging.consumer.group.name': ctx.getShareGroup(),
          'messaging.client.id': ctx.getClientId(),
          // Which of several independent brokers the message came through (docs/adr/0008).
          'server.address': ctx.getBroker().slice(0, ctx.getBroker().lastIndexOf(':')),
          'server.port': Number(ctx.getBroker().slice(ctx.getBroker().lastIndexOf(':') + 1)),
          'messaging.message.body.size': message.payload.length,
          'messaging.mqtt.dup': ctx.isRedelivery(),
        };
        if (device.deviceId) attributes['dmp.device.id'] = device.deviceId;
        return attributes;
      },
    );
    const spans = new MessageSpans(process, trace.setSpan(parent, process), device.carrier);
    ctx.onEnd((end) => spans.end(end));
    return spans;
  }
}

export interface DeviceTraceInfo {
  /** MQTT 5 user properties, or the payload's top-level `traceparent`. */
  carrier: TraceCarrier;
  deviceId?: string;
  messageId?: string;
}

export class MessageSpans {
  constructor(
    readonly span: Span,
    /** Context with the process span active: run the hand-off and its logs in it. */
    readonly context: Context,
    private readonly deviceCarrier: TraceCarrier,
  ) {}

  /**
   * Trace context for the next hop: the process span's. With tracing off (no SDK) that is empty, and the
   * device's own context is passed on so the kernel can still join the device's trace — without its
   * sampled flag, which would make the kernel record whatever the device asks for.
   */
  carrier(): TraceCarrier {
    const carrier = injectTraceContext(this.context);
    return carrier.traceparent ? carrier : withoutSampledFlag(this.deviceCarrier);
  }

  outcome(outcome: 'forwarded' | 'rejected' | 'filtered' | 'redeliver', attributes: Attributes = {}): void {
    if (this.span.isRecording()) this.span.setAttributes({ 'dmp.outcome': outcome, ...attributes });
  }

  /** Called by the transport's delivery end: the PUBACK went out, or the message was given up. */
  end(end: MqttDeliveryEnd): void {
    if (end.reasonCode !== undefined)
      this.span.setAttribute('messaging.mqtt.puback.reason_code', end.reasonCode);
    if (!end.acked) {
      this.span.setStatus({
        code: SpanStatusCode.ERROR,
        message: `not acknowledged: ${end.reason ?? 'unknown'}`,
      });
    }
    this.span.end(end.at);
  }
}

/** `traceparent`/`tracestate` from MQTT 5 user properties (the first value when repeated). */
export function traceCarrierOf(userProperties: Readonly<Record<string, string | string[]>>): TraceCarrier {
  const first = (value: string | string[] | undefined) => (Array.isArray(value) ? value[0] : value);
  const carrier: TraceCarrier = {};
  const traceparent = first(userProperties.traceparent);
  const tracestate = first(userProperties.tracestate);
  if (traceparent) carrier.traceparent = traceparent;
  if (tracestate) carrier.tracestate = tracestate;
  return carrier;
}
