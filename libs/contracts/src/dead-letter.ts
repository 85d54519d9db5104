/**
 * Dead letters: messages DMP refused or could not process, kept with their raw payload on the RocketMQ
 * topic `dmp_dead_letter` (ROCKETMQ_TOPIC_DEAD_LETTER) for operators to inspect and replay.
 *
 * The message body is the original payload, byte for byte; everything else travels in user properties
 * with these names. dmp-mqtt (refused device messages) and @dmp/messaging's consumer server (messages a
 * handler could not process) both write them; dmp-data stores every dead letter in ClickHouse
 * (`dead_letters`).
 */
export const DeadLetterProperty = {
  /** Stable DMP_ERR_* code of the refusal. */
  errorCode: 'dmp_error_code',
  /** Human-readable reason (never the payload itself). */
  errorMessage: 'dmp_error_message',
  /** Why a consumer gave up (`non_retryable` | `max_delivery_attempts`); consumer dead letters only. */
  reason: 'dmp_dead_letter_reason',
  /** Which part of DMP refused it, e.g. `dmp-mqtt`. */
  source: 'dmp_source',
  /** Which instance: the MQTT client id of a dmp-mqtt replica, the consumer group of a consumer. */
  sourceInstance: 'dmp_source_instance',
  /** Where the message came from: its MQTT topic, or its RocketMQ topic. */
  sourceTopic: 'dmp_source_topic',
  /** The message's own id when it could be read: the payload's messageId, or the RocketMQ message id. */
  sourceMessageId: 'dmp_source_message_id',
  sourceMessageGroup: 'dmp_source_message_group',
  consumerGroup: 'dmp_consumer_group',
  deliveryAttempt: 'dmp_delivery_attempt',
  /** The device, when the topic names a valid one. */
  deviceId: 'dmp_device_id',
  /** Epoch milliseconds when the source received the message. */
  receivedAt: 'dmp_received_at',
  /** The payload's content type (MQTT 5 Content Type), '' when none. */
  contentType: 'dmp_content_type',
  /** Length of the original payload in bytes: the body is longer only for an empty payload (see below). */
  payloadSize: 'dmp_payload_size',
} as const;
export type DeadLetterPropertyName = (typeof DeadLetterProperty)[keyof typeof DeadLetterProperty];

/** The ClickHouse table dmp-data stores every dead letter in (libs/clickhouse migration 004). */
export const DEAD_LETTERS_TABLE = 'dead_letters';

/** `dmp_source` of the dead letters dmp-mqtt writes. */
export const DEAD_LETTER_SOURCE_MQTT = 'dmp-mqtt';

/** Longest property value written (RocketMQ allows 16 KiB of properties per message in total). */
export const MAX_DEAD_LETTER_PROPERTY_LENGTH = 1024;

/**
 * RocketMQ refuses empty bodies: an empty payload travels as this one byte, with `dmp_payload_size` 0,
 * and {@link deadLetterPayload} gives the empty payload back.
 */
export const EMPTY_PAYLOAD_FILLER = Buffer.from([0]);

/** The body to send for a payload (never empty). */
export const deadLetterBody = (payload: Buffer): Buffer =>
  payload.length > 0 ? payload : EMPTY_PAYLOAD_FILLER;

/** The original payload of a dead letter: the body, cut to `dmp_payload_size` when that is present. */
export function deadLetterPayload(body: Buffer, properties: Readonly<Record<string, string>>): Buffer {
  const declared = properties[DeadLetterProperty.payloadSize];
  if (declared === undefined || !/^\d+$/.test(declared)) return body;
  const size = Number(declared);
  return size < body.length ? body.subarray(0, size) : body;
}

// RocketMQ refuses property values with ISO control characters (U+0000–U+001F, U+007F–U+009F).
// eslint-disable-next-line no-control-regex
const CONTROL_CHARACTERS = /[\u0000-\u001f\u007f-\u009f]/g;

/**
 * A property value RocketMQ accepts: control characters written as `\uXXXX` (a topic or an error
 * detail may carry them — they come from devices), cut to `max` characters (marked with `…`).
 */
export function deadLetterPropertyValue(value: string, max = MAX_DEAD_LETTER_PROPERTY_LENGTH): string {
  const escaped = value.replace(
    CONTROL_CHARACTERS,
    (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`,
  );
  if (escaped.length <= max) return escaped;
  // Do not cut a surrogate pair in half: a lone surrogate is not valid UTF-8.
  let end = max - 1;
  const code = escaped.charCodeAt(end - 1);
  if (code >= 0xd800 && code <= 0xdbff) end--;
  return `${escaped.slice(0, end)}…`;
}
