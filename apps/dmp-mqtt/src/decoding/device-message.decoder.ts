import {
  type DevicePayload,
  devicePayloadSchema,
  type DeviceTopic,
  errorMessage,
  parseDeviceTopic,
  RejectCode,
  type TelemetryEnvelope,
  type TelemetryKind,
} from '@dmp/contracts';
import type { z } from 'zod';
import { createProtobufDecoder, type ProtobufDecoder } from './protobuf-payload';

/**
 * Device payloads, JSON or Protobuf, to a validated {@link TelemetryEnvelope} — or a {@link Rejection}
 * with its stable code. Plain functions: no I/O, no Nest.
 *
 * Wire format: the MQTT 5 Content Type chooses it. `application/x-protobuf` (also `application/protobuf`,
 * `application/vnd.google.protobuf`) means `DevicePayload` from telemetry.proto; none, or
 * `application/json`, means JSON; anything else is rejected. Content type rather than a topic suffix
 * because it is what the property is for, it keeps one topic per device channel (ACLs and shared
 * subscriptions stay simple), and a device can switch formats per message. MQTT 3.1.1 devices have no
 * content type and send JSON.
 */

export interface Rejection {
  code: RejectCode;
  /** Why, for the log (never the payload itself). */
  detail: string;
  /** What could be read before rejecting, for logs and spans. */
  messageId?: string;
  traceparent?: string;
}

export interface DecodedMessage {
  envelope: TelemetryEnvelope;
  format: PayloadFormat;
  /** Top-level `traceparent` of the payload: how MQTT 3.1.1 devices send their trace context. */
  traceparent?: string;
}

export type DecodeResult = { ok: true; message: DecodedMessage } | { ok: false; rejection: Rejection };

export type PayloadFormat = 'json' | 'protobuf';

export interface DecodeInput {
  /** From the topic `devices/{deviceId}/{kind}`. */
  deviceId: string;
  kind: TelemetryKind;
  payload: Buffer;
  contentType?: string;
  receivedAt: number;
}

/** `devices/{deviceId}/{channel}` with a valid device id and a known channel, or DMP_ERR_WRONG_TOPIC. */
export function parseTopic(
  topic: string,
): { ok: true; topic: DeviceTopic } | { ok: false; rejection: Rejection } {
  const parsed = parseDeviceTopic(topic);
  if (parsed) return { ok: true, topic: parsed };
  return {
    ok: false,
    rejection: {
      code: RejectCode.WrongTopic,
      detail: 'topic is not devices/{deviceId}/{channel} with a valid device id',
    },
  };
}

export const PROTOBUF_CONTENT_TYPE = 'application/x-protobuf';
const PROTOBUF_MEDIA_TYPES = new Set([
  PROTOBUF_CONTENT_TYPE,
  'application/protobuf',
  'application/vnd.google.protobuf',
]);

export function payloadFormatOf(contentType: string | undefined): PayloadFormat | undefined {
  if (contentType === undefined || contentType === '') return 'json';
  const mediaType = contentType.split(';')[0].trim().toLowerCase();
  if (mediaType === 'application/json' || mediaType.endsWith('+json')) return 'json';
  if (PROTOBUF_MEDIA_TYPES.has(mediaType)) return 'protobuf';
  return undefined;
}

export class DeviceMessageDecoder {
  private readonly utf8 = new TextDecoder('utf-8', { fatal: true });

  constructor(
    private readonly maxPayloadBytes: number,
    private readonly decodeProtobuf: ProtobufDecoder = createProtobufDecoder(),
  ) {}

  decode(input: DecodeInput): DecodeResult {
    if (input.payload.length > this.maxPayloadBytes) {
      return reject(RejectCode.PayloadTooLarge, `${input.payload.length} bytes > ${this.maxPayloadBytes}`);
    }
    const format = payloadFormatOf(input.contentType);
    if (format === undefined)
      return reject(RejectCode.MalformedPayload, `unsupported content type ${input.contentType}`);

    let raw: unknown;
    try {
      raw =
        format === 'json' ? JSON.parse(this.utf8.decode(input.payload)) : this.decodeProtobuf(input.payload);
    } catch (error) {
      const reason = errorMessage(error);
      return reject(
        RejectCode.MalformedPayload,
        `not ${format === 'json' ? 'JSON' : 'a DevicePayload'}: ${reason}`,
      );
    }
    const hints = readHints(raw);

    const parsed = devicePayloadSchema.safeParse(raw);
    if (!parsed.success) return reject(RejectCode.InvalidPayload, summarize(parsed.error), hints);
    const payload: DevicePayload = parsed.data;

    if (payload.deviceId !== undefined && payload.deviceId !== input.deviceId) {
      return reject(
        RejectCode.SpoofedDevice,
        `payload deviceId ${payload.deviceId} on the topic of ${input.deviceId}`,
        hints,
      );
    }
    return {
      ok: true,
      message: {
        format,
        traceparent: payload.traceparent,
        envelope: {
          deviceId: input.deviceId,
          messageId: payload.messageId,
          kind: input.kind,
          ts: payload.ts,
          seq: payload.seq,
          metrics: payload.metrics,
          receivedAt: Math.floor(input.receivedAt),
        },
      },
    };
  }
}

function reject(code: RejectCode, detail: string, hints: Partial<Rejection> = {}): DecodeResult {
  return { ok: false, rejection: { code, detail, ...hints } };
}

/** messageId and traceparent of an invalid payload, when they are there, for logs and spans. */
function readHints(raw: unknown): Partial<Rejection> {
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) return {};
  const { messageId, traceparent } = raw as Record<string, unknown>;
  const hints: Partial<Rejection> = {};
  if (typeof messageId === 'string' && messageId.length <= 128) hints.messageId = messageId;
  if (typeof traceparent === 'string' && traceparent.length <= 128) hints.traceparent = traceparent;
  return hints;
}

/** The first few validation issues, compactly: `metrics.temp: must be a finite number; ts: …`. */
function summarize(error: z.ZodError): string {
  const issues = error.issues
    .slice(0, 3)
    .map((issue) => `${issue.path.join('.') || '(root)'}: ${issue.message}`);
  if (error.issues.length > 3) issues.push(`… ${error.issues.length - 3} more`);
  return issues.join('; ');
}
