import { RejectCode, type DeviceTopic, type TelemetryKind } from '@dmp/contracts';
import type { TraceCarrier } from '@dmp/observability';
import { Inject, Injectable } from '@nestjs/common';
import { context } from '@opentelemetry/api';
import { InjectPinoLogger, PinoLogger } from 'nestjs-pino';
import { MQTT_APP_CONFIG, type MqttAppConfig } from '../config';
import {
  DeviceMessageDecoder,
  parseTopic,
  type DecodedMessage,
  type Rejection,
} from '../decoding/device-message.decoder';
import { KernelForwarder } from '../kernel-client/kernel-forwarder.service';
import { HandOffAbandonedError } from '../kernel-client/ordered-batcher';
import type { MqttContext } from '../transport/mqtt.context';
import {
  ackWith,
  PubackReason,
  redeliver,
  type MqttMessage,
  type MqttSettlement,
} from '../transport/mqtt-message';
import { IngestMetrics } from './ingest.metrics';
import { MessageTracing, traceCarrierOf, type MessageSpans } from './message-tracing';

/** PUBACK reason code telling the broker (and its logs) why a message was refused; it is acknowledged either way. */
const PUBACK_FOR_REJECTION: Partial<Record<string, PubackReason>> = {
  [RejectCode.MalformedPayload]: PubackReason.PayloadFormatInvalid,
  [RejectCode.InvalidPayload]: PubackReason.PayloadFormatInvalid,
  [RejectCode.PayloadTooLarge]: PubackReason.ImplementationSpecificError,
  [RejectCode.WrongTopic]: PubackReason.TopicNameInvalid,
  [RejectCode.UnknownDevice]: PubackReason.NotAuthorized,
  [RejectCode.SpoofedDevice]: PubackReason.NotAuthorized,
  [RejectCode.RateLimited]: PubackReason.QuotaExceeded,
  [RejectCode.Duplicate]: PubackReason.Success,
};

/**
 * One device message from the broker to dmp-kernel: topic → (heartbeat filter) → decode and validate →
 * hand-off → the settlement the transport turns into a PUBACK (or a redelivery).
 *
 * Bad input is acknowledged (redelivering it would never make it good), counted by reason code and
 * logged with device and topic. Checks to come (device authentication, deduplication, rate limits) fit
 * between `decode` and `forward` and answer a {@link Rejection} like the decoder; a dead-letter store
 * would hang off {@link IngestService.reject}, the one place every refused message goes through.
 */
@Injectable()
export class IngestService {
  private readonly decoder: DeviceMessageDecoder;

  constructor(
    @Inject(MQTT_APP_CONFIG) config: MqttAppConfig,
    private readonly kernel: KernelForwarder,
    private readonly metrics: IngestMetrics,
    private readonly tracing: MessageTracing,
    @InjectPinoLogger(IngestService.name) private readonly logger: PinoLogger,
  ) {
    this.decoder = new DeviceMessageDecoder(config.ingest.maxPayloadBytes);
  }

  async handle(message: MqttMessage, ctx: MqttContext): Promise<MqttSettlement> {
    const parsedTopic = parseTopic(message.topic);
    this.metrics.received.inc({ channel: parsedTopic.ok ? parsedTopic.topic.channel : 'invalid' });
    const userCarrier = traceCarrierOf(message.properties.userProperties);

    if (!parsedTopic.ok) {
      const spans = this.tracing.start(message, ctx, { carrier: userCarrier });
      return this.reject(message, spans, undefined, parsedTopic.rejection);
    }
    const { topic } = parsedTopic;
    if (topic.channel === 'heartbeat') {
      const spans = this.tracing.start(message, ctx, { carrier: userCarrier, deviceId: topic.deviceId });
      this.metrics.filtered.inc({ reason: RejectCode.Heartbeat });
      spans.outcome('filtered', { 'dmp.filter.reason': RejectCode.Heartbeat });
      return ackWith(PubackReason.Success);
    }

    const decoded = this.decoder.decode({
      deviceId: topic.deviceId,
      kind: topic.channel,
      payload: message.payload,
      contentType: message.properties.contentType,
      receivedAt: ctx.getReceivedAt(),
    });
    // MQTT 5 user properties win; the payload's field is for MQTT 3.1.1 devices.
    const payloadTraceparent = decoded.ok ? decoded.message.traceparent : decoded.rejection.traceparent;
    const carrier: TraceCarrier = userCarrier.traceparent
      ? userCarrier
      : payloadTraceparent
        ? { traceparent: payloadTraceparent }
        : {};
    const spans = this.tracing.start(message, ctx, {
      carrier,
      deviceId: topic.deviceId,
      messageId: decoded.ok ? decoded.message.envelope.messageId : decoded.rejection.messageId,
    });
    if (!decoded.ok) return this.reject(message, spans, topic, decoded.rejection);
    return context.with(spans.context, () => this.forward(message, ctx, spans, topic, decoded.message));
  }

  private async forward(
    message: MqttMessage,
    ctx: MqttContext,
    spans: MessageSpans,
    topic: DeviceTopic,
    decoded: DecodedMessage,
  ): Promise<MqttSettlement> {
    const { envelope } = decoded;
    try {
      const outcome = await this.kernel.forward(envelope, spans.carrier(), {
        signal: ctx.signal,
        payloadBytes: message.payload.length,
      });
      if (!outcome.accepted) {
        return this.reject(message, spans, topic, {
          code: outcome.errorCode as RejectCode,
          detail: `refused by dmp-kernel: ${outcome.errorMessage}`,
          messageId: envelope.messageId,
        });
      }
      this.metrics.forwarded.inc({ kind: envelope.kind satisfies TelemetryKind });
      spans.outcome('forwarded', { 'dmp.payload.format': decoded.format });
      return ackWith(PubackReason.Success);
    } catch (error) {
      if (!(error instanceof HandOffAbandonedError)) throw error;
      spans.outcome('redeliver', { 'dmp.handoff.abandoned': error.reason });
      const fields = { deviceId: topic.deviceId, topic: message.topic, messageId: envelope.messageId };
      // Connection loss is logged once by the transport; running out of retries is worth a line each
      // (not the messages queued behind it, abandoned with it to keep the device's order).
      if (error.reason !== 'deadline') this.logger.debug(fields, error.message);
      else this.logger.warn(fields, `not handed off, left for redelivery: ${error.message}`);
      return redeliver(error.message);
    }
  }

  /** Every refused message goes through here: counted, logged (device and topic, never the payload), acknowledged. */
  private reject(
    message: MqttMessage,
    spans: MessageSpans,
    topic: DeviceTopic | undefined,
    rejection: Rejection,
  ): MqttSettlement {
    const reason = rejection.code || 'DMP_ERR_REJECTED';
    this.metrics.rejected.inc({ reason });
    spans.outcome('rejected', { 'dmp.reject.code': reason });
    context.with(spans.context, () =>
      this.logger.warn(
        {
          reason,
          deviceId: topic?.deviceId,
          topic: message.topic,
          messageId: rejection.messageId,
          bytes: message.payload.length,
          contentType: message.properties.contentType,
        },
        `device message rejected: ${rejection.detail}`,
      ),
    );
    return ackWith(PUBACK_FOR_REJECTION[reason] ?? PubackReason.ImplementationSpecificError);
  }
}
