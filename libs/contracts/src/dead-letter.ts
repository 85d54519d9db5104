import { join } from 'node:path';
import protobuf from 'protobufjs';

/**
 * Dead letters: messages DMP refused or could not process, kept with their raw payload on the RocketMQ
 * topic `dmp_dead_letter` (ROCKETMQ_TOPIC_DEAD_LETTER) for operators to inspect and replay.
 *
 * Two shapes on the topic:
 * - **single** (@dmp/messaging's consumer server, for messages a handler could not process): the body is
 *   the original payload, byte for byte; everything else travels in user properties with these names.
 * - **batch** (dmp-mqtt, for refused device messages): `dmp_dead_letter_format` is
 *   {@link DEAD_LETTER_BATCH_FORMAT} and the body a `DeadLetterBatch` (proto/dead_letter.proto) — each
 *   entry the payload and the properties its single dead letter would have. One RocketMQ send per batch
 *   instead of per refused message: a flood of bad input costs bytes, not round trips.
 *
 * dmp-data stores every dead letter — every entry of a batch — as one row of ClickHouse `dead_letters`.
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
  /** {@link DEAD_LETTER_BATCH_FORMAT} on a batch; absent on a single dead letter. */
  format: 'dmp_dead_letter_format',
  /** Entries in a batch. */
  count: 'dmp_dead_letter_count',
  /** On a replayed message: the id of the dead letter (`dead_letters.message_id`) it replays. */
  replayOf: 'dmp_replay_of',
  /**
   * On a message `dmp dead-letters replay` put back on its RocketMQ topic: the consumer group that gave
   * up on it. Other groups of the topic, which handled the original already, acknowledge it unhandled.
   */
  replayForGroup: 'dmp_replay_for_group',
} as const;
export type DeadLetterPropertyName = (typeof DeadLetterProperty)[keyof typeof DeadLetterProperty];

/** The ClickHouse table dmp-data stores every dead letter in (libs/clickhouse migration 004). */
export const DEAD_LETTERS_TABLE = 'dead_letters';

/** `dmp_source` of the dead letters dmp-mqtt writes. */
export const DEAD_LETTER_SOURCE_MQTT = 'dmp-mqtt';

/** `source` of a `dead_letters` row that a RocketMQ consumer gave up on (its group in `source_instance`). */
export const DEAD_LETTER_SOURCE_CONSUMER = 'rocketmq-consumer';

/** The properties a consumer adds to the original ones when it dead-letters a message. */
export const CONSUMER_DEAD_LETTER_PROPERTIES: readonly string[] = [
  DeadLetterProperty.errorCode,
  DeadLetterProperty.errorMessage,
  DeadLetterProperty.reason,
  DeadLetterProperty.sourceTopic,
  DeadLetterProperty.sourceMessageId,
  DeadLetterProperty.sourceMessageGroup,
  DeadLetterProperty.consumerGroup,
  DeadLetterProperty.deliveryAttempt,
];

/**
 * Whether a consumer group should handle a message: a replayed one only by the group it is replayed
 * for (`dmp_replay_for_group`), everything else by every group.
 */
export const isForConsumerGroup = (properties: Readonly<Record<string, string>>, group: string): boolean => {
  const target = properties[DeadLetterProperty.replayForGroup];
  return target === undefined || target === '' || target === group;
};

/**
 * `dmp_source` of the dead letters dmp-kernel writes for side effects of rules (commands, webhooks) it
 * gave up on: the body is the kernel's outbox entry (JSON), and `dmp dead-letters replay` puts it back
 * into the kernel's outbox, so it is carried out again with the same id.
 */
export const DEAD_LETTER_SOURCE_KERNEL_OUTBOX = 'dmp-kernel-outbox';

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

// RocketMQ refuses property values with ISO control characters (U+0000–U+001F, U+007F–U+009F). Lone
// surrogates: JSON can carry them, UTF-8 cannot — protobufjs would write bytes the strict decoder
// refuses, and the whole batch would be undecodable.
// eslint-disable-next-line no-control-regex
const UNSAFE_CHARACTERS = /[\u0000-\u001f\u007f-\u009f]|\p{Cs}/gu;

/**
 * A property value RocketMQ accepts: control characters and lone surrogates written as `\uXXXX` (a
 * topic or an error detail may carry them — they come from devices), cut to `max` characters (marked
 * with `…`).
 */
export function deadLetterPropertyValue(value: string, max = MAX_DEAD_LETTER_PROPERTY_LENGTH): string {
  const escaped = value.replace(
    UNSAFE_CHARACTERS,
    (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`,
  );
  if (escaped.length <= max) return escaped;
  // Do not cut a surrogate pair in half: a lone surrogate is not valid UTF-8.
  let end = max - 1;
  const code = escaped.charCodeAt(end - 1);
  if (code >= 0xd800 && code <= 0xdbff) end--;
  return `${escaped.slice(0, end)}…`;
}

/** `dmp_dead_letter_format` of a batch: its body is this protobuf message. */
export const DEAD_LETTER_BATCH_FORMAT = 'dmp.deadletter.v1.DeadLetterBatch';

/** Absolute path of the dead-letter `.proto`, shipped next to the compiled library. */
export const DEAD_LETTER_PROTO_PATH = join(__dirname, 'proto', 'dead_letter.proto');

/** One dead letter inside a batch: its own properties (as a single dead letter's) and its raw payload. */
export interface DeadLetterEntry {
  properties: Record<string, string>;
  payload: Buffer;
}

let batchType: protobuf.Type | undefined;
const deadLetterBatchType = () =>
  (batchType ??= protobuf.loadSync(DEAD_LETTER_PROTO_PATH).lookupType(DEAD_LETTER_BATCH_FORMAT));

/** The body of a batch (empty payloads need no filler here: protobuf keeps their length). */
export function encodeDeadLetterBatch(entries: readonly DeadLetterEntry[]): Buffer {
  const type = deadLetterBatchType();
  return Buffer.from(type.encode(type.create({ entries })).finish());
}

/** Whether a dead letter's properties say it is a batch. */
export const isDeadLetterBatch = (properties: Readonly<Record<string, string>>): boolean =>
  properties[DeadLetterProperty.format] === DEAD_LETTER_BATCH_FORMAT;

/** The entries of a batch body; throws when the body is not a `DeadLetterBatch`. */
export function decodeDeadLetterBatch(body: Buffer): DeadLetterEntry[] {
  const type = deadLetterBatchType();
  const decoded = type.toObject(type.decode(body), { bytes: Buffer, defaults: true }) as {
    entries: { properties: Record<string, string>; payload: Buffer }[];
  };
  return decoded.entries.map((entry) => ({
    properties: entry.properties,
    payload: Buffer.isBuffer(entry.payload) ? entry.payload : Buffer.from(entry.payload),
  }));
}
