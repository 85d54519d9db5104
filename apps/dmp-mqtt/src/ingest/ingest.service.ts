import { type DeviceTopic, DmpError, HandOffErrorCode, RejectCode, type TelemetryKind } from '@dmp/contracts';
import { backoffDelay } from '@dmp/flow';
import type { TraceCarrier } from '@dmp/observability';
import { Inject, Injectable, type OnApplicationShutdown } from '@nestjs/common';
import { context } from '@opentelemetry/api';
import { InjectPinoLogger, PinoLogger } from 'nestjs-pino';
import { setTimeout as sleep } from 'node:timers/promises';
import { MQTT_APP_CONFIG, type MqttAppConfig } from '../config';
import { DeadLetterPublisher } from '../dead-letter/dead-letter.publisher';
import { DuplicateFilter, type DedupClaim } from '../dedup/duplicate-filter.service';
import {
  DeviceMessageDecoder,
  parseTopic,
  type DecodedMessage,
  type Rejection,
} from '../decoding/device-message.decoder';
import { DeviceRegistry } from '../devices/device-registry.service';
import { KernelForwarder } from '../kernel-client/kernel-forwarder.service';
import { HandOffAbandonedError } from '../kernel-client/ordered-batcher';
import { DeviceRateLimiter } from '../rate-limit/token-bucket';
import type { MqttContext } from '../transport/mqtt.context';
import {
  ackWith,
  PubackReason,
  redeliver,
  redeliverAfter,
  type MqttMessage,
  type MqttSettlement,
} from '../transport/mqtt-message';
import { ArrivalOrder, type Turn } from './arrival-order';
import { IngestMetrics } from './ingest.metrics';
import { LeftBehind } from './left-behind';
import { MessageTracing, traceCarrierOf, type MessageSpans } from './message-tracing';
import { RejectionLogLimiter } from './rejection-log';

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

/** Rejections that are routine under load: logged at debug, not warn (they are counted and dead-lettered). */
const QUIET_REJECTIONS = new Set<string>([RejectCode.RateLimited, RejectCode.Duplicate]);

/** Refusals logged one by one per reason code and window; the rest of a flood in one line per window. */
const REJECTION_LOG = { linesPerWindow: 20, windowMs: 10_000 };

const REGISTRY_RETRY_BASE_MS = 100;
const REGISTRY_RETRY_MAX_MS = 2_000;
const DEFERRAL_LOG_INTERVAL_MS = 10_000;

/**
 * One device message from the broker to dmp-kernel, through the edge's checks, in this order (the first
 * that fails decides the reason code):
 *
 *   topic (DMP_ERR_WRONG_TOPIC) → heartbeat (filtered: counted, acknowledged, not forwarded) →
 *   known device (DMP_ERR_UNKNOWN_DEVICE: not registered or disabled) →
 *   decode + validate (DMP_ERR_PAYLOAD_TOO_LARGE, _MALFORMED_PAYLOAD, _INVALID_PAYLOAD, _SPOOFED_DEVICE) →
 *   duplicate (DMP_ERR_DUPLICATE) → rate limit (DMP_ERR_RATE_LIMITED) → hand-off to dmp-kernel → the
 *   settlement the transport turns into a PUBACK (or a redelivery).
 *
 * Identity comes before parsing so that unknown devices cost no decoding. The rate limit comes after the
 * duplicate check so that a message is counted once: copies of accepted messages and the broker's
 * redeliveries cost no token (a flood of a registered device is decoded before it is refused; Receive
 * Maximum bounds how much of it is in flight). Every
 * refused message goes through {@link IngestService.reject}: sent with its raw payload to the dead-letter
 * topic, then counted by reason and acknowledged. Nothing refused is acknowledged before its dead letter
 * is stored; what cannot be decided yet (registry unreachable, dead-letter topic unreachable) waits, and
 * is redelivered by the broker if its delivery ends first. A device's messages are handed off in the
 * order they arrived, however long each one's checks took ({@link ArrivalOrder}). The log keeps the
 * first refusals of each reason per window and sums up the rest (a flood of bad input must not flood
 * the log too).
 */
@Injectable()
export class IngestService implements OnApplicationShutdown {
  private readonly decoder: DeviceMessageDecoder;
  private readonly registryRequired: boolean;
  private readonly registryWaitMs: number;
  private readonly leftBehind = new LeftBehind();
  private lastDeferralLogAt = -Infinity;
  private readonly rateLimiter: DeviceRateLimiter;
  private readonly rejectionLog: RejectionLogLimiter;
  private readonly arrivalOrder = new ArrivalOrder();

  constructor(
    @Inject(MQTT_APP_CONFIG) config: MqttAppConfig,
    private readonly kernel: KernelForwarder,
    private readonly registry: DeviceRegistry,
    private readonly duplicates: DuplicateFilter,
    private readonly deadLetters: DeadLetterPublisher,
    private readonly metrics: IngestMetrics,
    private readonly tracing: MessageTracing,
    @InjectPinoLogger(IngestService.name) private readonly logger: PinoLogger,
  ) {
    this.decoder = new DeviceMessageDecoder(config.ingest.maxPayloadBytes);
    this.registryRequired = config.edge.registry.required;
    this.registryWaitMs = config.edge.registry.waitMs;
    this.rateLimiter = new DeviceRateLimiter(config.edge.rateLimit, config.edge.registry.cacheMaxEntries);
    if (!this.registryRequired)
      this.logger.warn('DEVICE_REGISTRY_REQUIRED=false: messages of unregistered devices are accepted');
    this.rejectionLog = new RejectionLogLimiter(REJECTION_LOG, (s) =>
      this.logger.warn(
        { reason: s.reason, suppressed: s.count, devices: s.devices, sample: s.sample },
        `${s.count} more ${s.reason} refusals in ${s.windowMs / 1000} s from ${s.devices}${s.devices >= 1_000 ? '+' : ''} ` +
          `device(s), e.g. ${s.sample.join(', ')} (logged one by one up to ${REJECTION_LOG.linesPerWindow} per ` +
          `window; all counted in dmp_mqtt_rejected_total and dead-lettered)`,
      ),
    );
  }

  /** The summary of refusals not logged yet. */
  onApplicationShutdown(): void {
    this.rejectionLog.flush(true);
  }

  async handle(message: MqttMessage, ctx: MqttContext): Promise<MqttSettlement> {
    const parsedTopic = parseTopic(message.topic);
    this.metrics.received.inc({ channel: parsedTopic.ok ? parsedTopic.topic.channel : 'invalid' });
    const userCarrier = traceCarrierOf(message.properties.userProperties);

    if (!parsedTopic.ok) {
      const spans = this.tracing.start(message, ctx, { carrier: userCarrier });
      return this.reject(message, ctx, spans, undefined, parsedTopic.rejection);
    }
    const { topic } = parsedTopic;
    if (topic.channel === 'heartbeat') {
      const spans = this.tracing.start(message, ctx, { carrier: userCarrier, deviceId: topic.deviceId });
      this.metrics.filtered.inc({ reason: RejectCode.Heartbeat });
      spans.outcome('filtered', { 'dmp.filter.reason': RejectCode.Heartbeat });
      return ackWith(PubackReason.Success);
    }
    const turn = this.arrivalOrder.enter(topic.deviceId);
    try {
      const dataTopic = { deviceId: topic.deviceId, channel: topic.channel };
      return await this.handleDeviceMessage(message, ctx, dataTopic, userCarrier, turn);
    } finally {
      turn.leave();
    }
  }

  /** A message on a device's data topic; its turn passes once it is handed off or refused. */
  private async handleDeviceMessage(
    message: MqttMessage,
    ctx: MqttContext,
    topic: DeviceTopic & { channel: TelemetryKind },
    userCarrier: TraceCarrier,
    turn: Turn,
  ): Promise<MqttSettlement> {
    const early = await this.checkDevice(topic.deviceId, ctx.signal);
    if (early === 'aborted' || early === 'timeout') {
      const spans = this.tracing.start(message, ctx, { carrier: userCarrier, deviceId: topic.deviceId });
      spans.outcome('redeliver', { 'dmp.handoff.abandoned': 'registry unavailable' });
      if (early === 'aborted') return redeliver('device registry unavailable');
      // Past DEVICE_REGISTRY_WAIT_MS: out of the way of the connection's other acknowledgements, and
      // redelivered by the broker once Redis is back (the transport replaces the connection then).
      const after = this.registry.whenAvailable();
      this.leftBehind.leave(ctx.signal, topic.deviceId, after);
      if (performance.now() - this.lastDeferralLogAt >= DEFERRAL_LOG_INTERVAL_MS) {
        this.lastDeferralLogAt = performance.now();
        this.logger.warn(
          { deviceId: topic.deviceId, topic: message.topic },
          `device registry did not answer within ${this.registryWaitMs} ms: message left for redelivery once ` +
            `Redis is back (one line per ${DEFERRAL_LOG_INTERVAL_MS / 1000} s; all in dmp_mqtt_deferred_total)`,
        );
      }
      return redeliverAfter(`device registry unavailable for ${this.registryWaitMs} ms`, after);
    }
    if (early) {
      const spans = this.tracing.start(message, ctx, { carrier: userCarrier, deviceId: topic.deviceId });
      return this.reject(message, ctx, spans, topic, early);
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
    if (!decoded.ok) return this.reject(message, ctx, spans, topic, decoded.rejection);

    const { envelope } = decoded.message;
    const dedup = await this.duplicates.check(envelope);
    if (dedup.duplicate) {
      return this.reject(message, ctx, spans, topic, {
        code: RejectCode.Duplicate,
        detail:
          dedup.kind === 'message_id'
            ? `message id ${envelope.messageId} already accepted`
            : `same content as a message accepted moments ago (new message id ${envelope.messageId})`,
        messageId: envelope.messageId,
      });
    }
    // After the duplicate check: a message is counted once (see DeviceRateLimiter).
    if (!this.rateLimiter.allow(topic.deviceId, { redelivery: ctx.isRedelivery() })) {
      dedup.claim.release();
      this.metrics.rateLimitHits.inc();
      return this.reject(message, ctx, spans, topic, {
        code: RejectCode.RateLimited,
        detail: `device ${topic.deviceId} exceeds its message rate`,
        messageId: envelope.messageId,
      });
    }
    return context.with(spans.context, () =>
      this.forward(message, ctx, spans, topic, decoded.message, dedup.claim, turn),
    );
  }

  /**
   * Identity: a rejection, undefined to go on, or — when the registry stayed unreachable with nothing
   * cached about the device — 'timeout' after DEVICE_REGISTRY_WAIT_MS, 'aborted' if the delivery ended
   * first (the message is then redelivered, not refused).
   */
  private async checkDevice(
    deviceId: string,
    signal: AbortSignal,
  ): Promise<Rejection | undefined | 'aborted' | 'timeout'> {
    if (this.registryRequired) {
      let active = this.registry.isCached(deviceId)
        ? await this.registry.isActive(deviceId)
        : await this.withRegistry(() => this.registry.isActive(deviceId), signal);
      // A lookup that hung past the deadline (a connection attempt) had no chance to fall back.
      const known = active === 'timeout' ? this.registry.lastKnown(deviceId) : undefined;
      if (known) active = known.device?.status === 'enabled';
      if (active === 'aborted' || active === 'timeout') return active;
      if (!active)
        return {
          code: RejectCode.UnknownDevice,
          detail: `device ${deviceId} is not registered or is disabled`,
        };
    }
    return undefined;
  }

  /**
   * Retries a registry call while Redis is unreachable (and nothing is cached) for at most
   * DEVICE_REGISTRY_WAIT_MS — a call that hangs (a connection attempt) counts too — and not beyond the
   * delivery. The message's PUBACK, and those of every message received after it, wait meanwhile.
   */
  private async withRegistry<T>(
    call: () => Promise<T>,
    signal: AbortSignal,
  ): Promise<T | 'aborted' | 'timeout'> {
    const deadline = AbortSignal.any([signal, AbortSignal.timeout(this.registryWaitMs)]);
    const ended = () => (signal.aborted ? 'aborted' : 'timeout');
    for (let attempt = 1; ; attempt++) {
      try {
        return await untilAborted(call(), deadline);
      } catch (error) {
        if (deadline.aborted) return ended();
        if (!(error instanceof DmpError && error.retryable)) throw error;
        if (attempt === 1) this.logger.debug(`waiting for the device registry: ${error.message}`);
        const delay = backoffDelay(attempt, { baseMs: REGISTRY_RETRY_BASE_MS, maxMs: REGISTRY_RETRY_MAX_MS });
        try {
          await sleep(delay, undefined, { signal: deadline });
        } catch {
          return ended();
        }
      }
    }
  }

  private async forward(
    message: MqttMessage,
    ctx: MqttContext,
    spans: MessageSpans,
    topic: DeviceTopic,
    decoded: DecodedMessage,
    claim: DedupClaim,
    turn: Turn,
  ): Promise<MqttSettlement> {
    const { envelope } = decoded;
    let accepted = false;
    try {
      // The device's earlier messages go first (see ArrivalOrder); the batcher keeps that order.
      await turn.ready;
      const behind = this.leftBehind.of(ctx.signal, topic.deviceId);
      if (behind) {
        turn.leave();
        spans.outcome('redeliver', { 'dmp.handoff.abandoned': 'behind a message left for redelivery' });
        return redeliverAfter('behind a message of its device left for redelivery', behind);
      }
      const handOff = this.kernel.forward(envelope, spans.carrier(), ctx.signal);
      turn.leave();
      const outcome = await handOff;
      if (!outcome.accepted) {
        return await this.reject(message, ctx, spans, topic, {
          code: outcome.errorCode as RejectCode,
          detail: `refused by dmp-kernel: ${outcome.errorMessage}`,
          messageId: envelope.messageId,
        });
      }
      accepted = true;
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
    } finally {
      // Marked as seen only when dmp-kernel took it: a redelivery after a failed hand-off must get through.
      if (accepted) claim.commit();
      else claim.release();
    }
  }

  /**
   * Every refused message goes through here: its raw payload to the dead-letter topic, then counted,
   * logged (device and topic, never the payload) and acknowledged. If the delivery ends before the dead
   * letter is stored, the message is left for redelivery instead.
   */
  private async reject(
    message: MqttMessage,
    ctx: MqttContext,
    spans: MessageSpans,
    topic: DeviceTopic | undefined,
    rejection: Rejection,
  ): Promise<MqttSettlement> {
    const reason = rejection.code || HandOffErrorCode.Rejected;
    spans.outcome('rejected', { 'dmp.reject.code': reason });
    const outcome = await context.with(spans.context, () =>
      this.deadLetters.publish(
        {
          payload: message.payload,
          topic: message.topic,
          deviceId: topic?.deviceId,
          messageId: rejection.messageId,
          contentType: message.properties.contentType,
          receivedAt: ctx.getReceivedAt(),
          code: reason,
          detail: rejection.detail,
        },
        ctx.signal,
      ),
    );
    if (outcome === 'aborted') {
      spans.outcome('redeliver', { 'dmp.handoff.abandoned': 'dead letter not stored' });
      return redeliver('dead letter not stored before the delivery ended');
    }
    this.metrics.rejected.inc({ reason });
    spans.outcome('rejected', { 'dmp.dead_letter': outcome });
    context.with(spans.context, () => {
      const fields = {
        reason,
        deviceId: topic?.deviceId,
        topic: message.topic,
        messageId: rejection.messageId,
        bytes: message.payload.length,
        contentType: message.properties.contentType,
        deadLetter: outcome,
      };
      const text = `device message rejected: ${rejection.detail}`;
      if (QUIET_REJECTIONS.has(reason)) this.logger.debug(fields, text);
      else if (this.rejectionLog.admit(reason, topic?.deviceId)) this.logger.warn(fields, text);
    });
    return ackWith(PUBACK_FOR_REJECTION[reason] ?? PubackReason.ImplementationSpecificError);
  }
}

/** The promise's outcome, or a rejection once the signal aborts (the promise is left to settle alone). */
function untilAborted<T>(promise: Promise<T>, signal: AbortSignal): Promise<T> {
  let onAbort: () => void = () => undefined;
  const aborted = new Promise<never>((_, reject) => {
    onAbort = () => reject(new Error('aborted'));
    if (signal.aborted) onAbort();
    else signal.addEventListener('abort', onAbort, { once: true });
  });
  return Promise.race([promise, aborted]).finally(() => signal.removeEventListener('abort', onAbort));
}
