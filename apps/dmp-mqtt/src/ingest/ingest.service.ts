import { type DeviceTopic, DmpError, RejectCode, type TelemetryKind } from '@dmp/contracts';
import { backoffDelay } from '@dmp/flow';
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
import {
  type DataTopic,
  decideHandOff,
  decideIngest,
  type IngestFact,
  type IngestFacts,
  type IngestVerdict,
  rejectionOutcome,
} from './ingest-decision';
import { IngestMetrics } from './ingest.metrics';
import { LeftBehind } from './left-behind';
import { MessageTracing, traceCarrierOf, type DeviceTraceInfo, type MessageSpans } from './message-tracing';
import { RejectionLogLimiter } from './rejection-log';

/** Rejections that are routine under load: logged at debug, not warn (they are counted and dead-lettered). */
const QUIET_REJECTIONS = new Set<string>([RejectCode.RateLimited, RejectCode.Duplicate]);

/** Refusals logged one by one per reason code and window; the rest of a flood in one line per window. */
const REJECTION_LOG = { linesPerWindow: 20, windowMs: 10_000 };

const REGISTRY_RETRY_BASE_MS = 100;
const REGISTRY_RETRY_MAX_MS = 2_000;
const DEFERRAL_LOG_INTERVAL_MS = 10_000;

/**
 * One device message from the broker to dmp-kernel, through the edge's checks — their order is decided by
 * {@link decideIngest} (ingest-decision.ts), which this service asks what to learn next, then carries out
 * its verdict: filtered, refused, left for redelivery, or handed off and settled by dmp-kernel's answer.
 * The message's spans start once, when the verdict is known.
 *
 * Every refused message goes through {@link IngestService.reject}: sent with its raw payload to the
 * dead-letter topic, then counted by reason and acknowledged. Nothing refused is acknowledged before its
 * dead letter is stored; what cannot be decided yet (registry unreachable, dead-letter topic unreachable)
 * waits, and is redelivered by the broker if its delivery ends first. A device's messages are handed off
 * in the order they arrived, however long each one's checks took ({@link ArrivalOrder}): each takes its
 * turn on arrival and leaves it once, when handed off or settled otherwise. The log keeps the first
 * refusals of each reason per window and sums up the rest (a flood of bad input must not flood the log
 * too).
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
    const topic = parseTopic(message.topic);
    this.metrics.received.inc({ channel: topic.ok ? topic.topic.channel : 'invalid' });
    const facts: IngestFacts = { topic, userCarrier: traceCarrierOf(message.properties.userProperties) };
    // Taken at once, in arrival order: the checks below may finish in any order.
    const turn =
      topic.ok && topic.topic.channel !== 'heartbeat'
        ? this.arrivalOrder.enter(topic.topic.deviceId)
        : undefined;
    let step: MqttSettlement | HandOff;
    try {
      step = await this.decideAndStart(message, ctx, facts, turn);
    } finally {
      turn?.leave(); // the one place it is left: handed off, or settled otherwise
    }
    if (!('pending' in step)) return step;
    const handOff = step;
    return context.with(handOff.spans.context, () => this.settleHandOff(message, ctx, handOff));
  }

  /**
   * Gathers what decideIngest asks for, starts the spans, and carries out a verdict — up to the start of
   * the hand-off, which happens in the device's turn (the batcher keeps that order from there).
   */
  private async decideAndStart(
    message: MqttMessage,
    ctx: MqttContext,
    facts: IngestFacts,
    turn: Turn | undefined,
  ): Promise<MqttSettlement | HandOff> {
    let claim: DedupClaim | undefined;
    try {
      // Started once, as soon as the trace context is known: the duplicate check may wait for a copy's
      // hand-off, and a delivery that ends meanwhile must still end them.
      let started: MessageSpans | undefined;
      const startSpans = (trace: DeviceTraceInfo) => (started ??= this.tracing.start(message, ctx, trace));
      let decision = decideIngest(facts);
      while (decision.kind === 'need') {
        if (decision.trace) startSpans(decision.trace);
        claim = (await this.gather(decision.fact, facts, message, ctx)) ?? claim;
        decision = decideIngest(facts);
      }
      const spans = startSpans(decision.trace);
      if (decision.kind !== 'forward') {
        claim?.release(); // not handed off: a copy waiting for it goes on itself
        return await this.carryOut(decision, message, ctx, spans);
      }
      const { topic } = decision;
      // The device's earlier messages go first (see ArrivalOrder).
      await turn?.ready;
      const behind = this.leftBehind.of(ctx.signal, topic.deviceId);
      if (behind) {
        claim?.release();
        spans.outcome('redeliver', { 'dmp.handoff.abandoned': 'behind a message left for redelivery' });
        return redeliverAfter('behind a message of its device left for redelivery', behind);
      }
      const pending = context.with(spans.context, () =>
        this.kernel.forward(decision.message.envelope, spans.carrier(), ctx.signal),
      );
      return { pending, spans, topic, decoded: decision.message, claim: claim ?? NO_CLAIM };
    } catch (error) {
      claim?.release();
      throw error;
    }
  }

  /** Learns `fact` about the message into `facts`; a duplicate check that lets it through returns its claim. */
  private async gather(
    fact: IngestFact,
    facts: IngestFacts,
    message: MqttMessage,
    ctx: MqttContext,
  ): Promise<DedupClaim | undefined> {
    const { deviceId, channel } = (facts.topic as { topic: DataTopic }).topic;
    switch (fact) {
      case 'identity':
        facts.identity = (await this.checkDevice(deviceId, ctx.signal)) ?? 'known';
        return undefined;
      case 'decoded':
        facts.decoded = this.decoder.decode({
          deviceId,
          kind: channel,
          payload: message.payload,
          contentType: message.properties.contentType,
          receivedAt: ctx.getReceivedAt(),
        });
        return undefined;
      case 'duplicate': {
        const dedup = await this.duplicates.check(
          (facts.decoded as { message: DecodedMessage }).message.envelope,
        );
        facts.duplicate = dedup.duplicate && dedup.kind;
        return dedup.duplicate ? undefined : dedup.claim;
      }
      case 'rate':
        facts.withinRate = this.rateLimiter.allow(deviceId, { redelivery: ctx.isRedelivery() });
        return undefined;
    }
  }

  /** A verdict other than the hand-off. */
  private async carryOut(
    verdict: Exclude<IngestVerdict, { kind: 'forward' }>,
    message: MqttMessage,
    ctx: MqttContext,
    spans: MessageSpans,
  ): Promise<MqttSettlement> {
    switch (verdict.kind) {
      case 'filter':
        this.metrics.filtered.inc({ reason: verdict.reason });
        spans.outcome('filtered', { 'dmp.filter.reason': verdict.reason });
        return ackWith(PubackReason.Success);
      case 'reject':
        if (verdict.rejection.code === RejectCode.RateLimited) this.metrics.rateLimitHits.inc();
        return this.reject(message, ctx, spans, verdict.topic, verdict.rejection);
      case 'registry-unavailable':
        return this.deferForRegistry(verdict.gaveUp, message, ctx, spans, verdict.topic);
    }
  }

  /** The registry did not answer: redelivered, not refused. */
  private deferForRegistry(
    gaveUp: 'aborted' | 'timeout',
    message: MqttMessage,
    ctx: MqttContext,
    spans: MessageSpans,
    topic: DataTopic,
  ): MqttSettlement {
    spans.outcome('redeliver', { 'dmp.handoff.abandoned': 'registry unavailable' });
    if (gaveUp === 'aborted') return redeliver('device registry unavailable');
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

  /** Waits for dmp-kernel's answer to a hand-off (out of the device's turn) and settles the message. */
  private async settleHandOff(
    message: MqttMessage,
    ctx: MqttContext,
    handOff: HandOff,
  ): Promise<MqttSettlement> {
    const { spans, topic, decoded, claim } = handOff;
    const { envelope } = decoded;
    let accepted = false;
    try {
      const answer = decideHandOff(await handOff.pending, envelope.messageId);
      if (answer.kind === 'reject') return await this.reject(message, ctx, spans, topic, answer.rejection);
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
    const { reason, puback } = rejectionOutcome(rejection);
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
    return ackWith(puback);
  }
}

/** A message whose hand-off started: dmp-kernel's answer is awaited out of the device's turn. */
interface HandOff {
  pending: ReturnType<KernelForwarder['forward']>;
  spans: MessageSpans;
  topic: DataTopic;
  decoded: DecodedMessage;
  claim: DedupClaim;
}

const NO_CLAIM: DedupClaim = { commit: () => undefined, release: () => undefined };

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
