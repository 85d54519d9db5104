import { type DeviceTopic, HandOffErrorCode, RejectCode, type TelemetryKind } from '@dmp/contracts';
import type { TraceCarrier } from '@dmp/observability';
import type { DuplicateKind } from '../dedup/dedup-keys';
import type { DecodedMessage, DecodeResult, Rejection } from '../decoding/device-message.decoder';
import { PubackReason } from '../transport/mqtt-message';
import type { DeviceTraceInfo } from './message-tracing';

/**
 * What IngestService does with one device message, decided from what it learnt of it so far: the edge's
 * checks in their order (the first that fails decides the reason code), each asked for only once the
 * earlier ones passed — unknown devices cost no decoding, duplicates no rate-limit token. Pure: the
 * service gathers the fact asked for and decides again, starts the message's spans once the trace
 * context is known, and carries the verdict out.
 *
 *   topic (DMP_ERR_WRONG_TOPIC) → heartbeat (filtered) → known device (DMP_ERR_UNKNOWN_DEVICE; the
 *   registry unreachable: left for redelivery) → decode + validate → duplicate (DMP_ERR_DUPLICATE) →
 *   rate limit (DMP_ERR_RATE_LIMITED) → hand-off to dmp-kernel.
 */

export type DataTopic = DeviceTopic & { channel: TelemetryKind };

/** What is known of a message; each field is set by the service when the decision asks for it. */
export interface IngestFacts {
  topic: { ok: true; topic: DeviceTopic } | { ok: false; rejection: Rejection };
  /** MQTT 5 user properties' trace context. */
  userCarrier: TraceCarrier;
  /** 'known': registered and enabled (or no registry required); 'aborted' / 'timeout': it did not answer. */
  identity?: 'known' | 'aborted' | 'timeout' | Rejection;
  decoded?: DecodeResult;
  /** Whether a copy was accepted before, and as what. */
  duplicate?: false | DuplicateKind;
  withinRate?: boolean;
}

export type IngestFact = 'identity' | 'decoded' | 'duplicate' | 'rate';

export type IngestVerdict =
  /** A heartbeat: counted and acknowledged, not forwarded. */
  | { kind: 'filter'; reason: typeof RejectCode.Heartbeat }
  | { kind: 'reject'; rejection: Rejection; topic?: DataTopic }
  /** The registry did not answer before the delivery ended ('aborted') or DEVICE_REGISTRY_WAIT_MS passed. */
  | { kind: 'registry-unavailable'; gaveUp: 'aborted' | 'timeout'; topic: DataTopic }
  | { kind: 'forward'; message: DecodedMessage; topic: DataTopic };

/**
 * `trace`: the device's trace context, for the message's spans, once it is final (decoding may find it in
 * the payload) — on every verdict, and on the needs after decoding.
 */
export type IngestDecision =
  { kind: 'need'; fact: IngestFact; trace?: DeviceTraceInfo } | (IngestVerdict & { trace: DeviceTraceInfo });

export function decideIngest(facts: IngestFacts): IngestDecision {
  const { userCarrier } = facts;
  if (!facts.topic.ok)
    return { kind: 'reject', rejection: facts.topic.rejection, trace: { carrier: userCarrier } };
  const { deviceId, channel } = facts.topic.topic;
  const early = { carrier: userCarrier, deviceId };
  if (channel === 'heartbeat') return { kind: 'filter', reason: RejectCode.Heartbeat, trace: early };
  const topic: DataTopic = { deviceId, channel };

  if (facts.identity === undefined) return { kind: 'need', fact: 'identity' };
  if (facts.identity === 'aborted' || facts.identity === 'timeout')
    return { kind: 'registry-unavailable', gaveUp: facts.identity, topic, trace: early };
  if (facts.identity !== 'known') return { kind: 'reject', rejection: facts.identity, topic, trace: early };

  if (facts.decoded === undefined) return { kind: 'need', fact: 'decoded' };
  const trace = traceOf(userCarrier, deviceId, facts.decoded);
  if (!facts.decoded.ok) return { kind: 'reject', rejection: facts.decoded.rejection, topic, trace };
  const { message } = facts.decoded;
  const { messageId } = message.envelope;

  if (facts.duplicate === undefined) return { kind: 'need', fact: 'duplicate', trace };
  if (facts.duplicate) {
    const detail =
      facts.duplicate === 'message_id'
        ? `message id ${messageId} already accepted`
        : `same content as a message accepted moments ago (new message id ${messageId})`;
    return { kind: 'reject', rejection: { code: RejectCode.Duplicate, detail, messageId }, topic, trace };
  }
  // After the duplicate check: a message is counted once (see DeviceRateLimiter).
  if (facts.withinRate === undefined) return { kind: 'need', fact: 'rate', trace };
  if (!facts.withinRate) {
    const detail = `device ${deviceId} exceeds its message rate`;
    return { kind: 'reject', rejection: { code: RejectCode.RateLimited, detail, messageId }, topic, trace };
  }
  return { kind: 'forward', message, topic, trace };
}

/** The device's trace context: MQTT 5 user properties win; the payload's field is for MQTT 3.1.1 devices. */
function traceOf(userCarrier: TraceCarrier, deviceId: string, decoded: DecodeResult): DeviceTraceInfo {
  const payloadTraceparent = decoded.ok ? decoded.message.traceparent : decoded.rejection.traceparent;
  const carrier: TraceCarrier = userCarrier.traceparent
    ? userCarrier
    : payloadTraceparent
      ? { traceparent: payloadTraceparent }
      : {};
  const messageId = decoded.ok ? decoded.message.envelope.messageId : decoded.rejection.messageId;
  return { carrier, deviceId, messageId };
}

/** What dmp-kernel's answer makes of a handed-off message: acknowledged, or refused with its code. */
export function decideHandOff(
  outcome: { accepted: true } | { accepted: false; errorCode: string; errorMessage: string },
  messageId: string,
): { kind: 'forwarded' } | { kind: 'reject'; rejection: Rejection } {
  if (outcome.accepted) return { kind: 'forwarded' };
  return {
    kind: 'reject',
    rejection: {
      code: outcome.errorCode as RejectCode,
      detail: `refused by dmp-kernel: ${outcome.errorMessage}`,
      messageId,
    },
  };
}

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

/** The reason code a refusal is counted and dead-lettered under, and its PUBACK reason. */
export function rejectionOutcome(rejection: Rejection): { reason: string; puback: PubackReason } {
  const reason = rejection.code || HandOffErrorCode.Rejected;
  return { reason, puback: PUBACK_FOR_REJECTION[reason] ?? PubackReason.ImplementationSpecificError };
}
