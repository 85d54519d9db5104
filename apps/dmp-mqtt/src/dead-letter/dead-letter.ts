import {
  DEAD_LETTER_BATCH_FORMAT,
  DEAD_LETTER_SOURCE_MQTT,
  type DeadLetterEntry,
  DeadLetterProperty,
  deadLetterPropertyValue,
  encodeDeadLetterBatch,
  HandOffErrorCode,
  MESSAGE_ID_PATTERN,
} from '@dmp/contracts';
import type { OutgoingMessage } from '@dmp/messaging';

/** One refused device message, as dmp-mqtt knows it. */
export interface RefusedMessage {
  /** The raw payload, byte for byte. */
  payload: Buffer;
  /** The MQTT topic it was published on (possibly not a valid device topic). */
  topic: string;
  /** The device, if the topic names a valid one. */
  deviceId?: string;
  /** The payload's messageId, if it could be read. */
  messageId?: string;
  contentType?: string;
  /** Epoch milliseconds. */
  receivedAt: number;
  code: string;
  detail: string;
  /** This replica's MQTT client id. */
  instance: string;
}

/** A refused message on its way to the dead-letter topic: its batch entry and what the batch needs. */
export interface PackedDeadLetter {
  /** The reason code: one batch carries one code (its tag). */
  code: string;
  deviceId?: string;
  entry: DeadLetterEntry;
  /** Bytes it adds to a batch, roughly (payload and properties). */
  size: number;
}

/**
 * A refused message as an entry of a dead-letter batch: the raw payload, and as properties the reason
 * and the context (names in @dmp/contracts `DeadLetterProperty`, the same a single dead letter of the
 * RocketMQ consumer carries) plus the message's own `traceparent`. Property values are made safe
 * (no control characters, bounded length): topics and error details come from devices.
 */
export function toPackedDeadLetter(refused: RefusedMessage, traceparent?: string): PackedDeadLetter {
  const value = (text: string) => deadLetterPropertyValue(text);
  const properties: Record<string, string> = {
    [DeadLetterProperty.errorCode]: value(refused.code),
    [DeadLetterProperty.errorMessage]: value(refused.detail),
    [DeadLetterProperty.source]: DEAD_LETTER_SOURCE_MQTT,
    [DeadLetterProperty.sourceInstance]: value(refused.instance),
    [DeadLetterProperty.sourceTopic]: value(refused.topic),
    [DeadLetterProperty.receivedAt]: String(Math.floor(refused.receivedAt)),
    [DeadLetterProperty.contentType]: value(refused.contentType ?? ''),
    [DeadLetterProperty.payloadSize]: String(refused.payload.length),
  };
  if (refused.deviceId) properties[DeadLetterProperty.deviceId] = refused.deviceId;
  if (refused.messageId !== undefined && MESSAGE_ID_PATTERN.test(refused.messageId))
    properties[DeadLetterProperty.sourceMessageId] = refused.messageId;
  if (traceparent) properties.traceparent = traceparent;
  let size = refused.payload.length + ENTRY_OVERHEAD;
  for (const [name, text] of Object.entries(properties)) size += name.length + Buffer.byteLength(text);
  return {
    code: refused.code,
    ...(refused.deviceId ? { deviceId: refused.deviceId } : {}),
    entry: { properties, payload: refused.payload },
    size,
  };
}

/**
 * The RocketMQ message of a batch of refused messages, all with the same reason code: the entries as a
 * `DeadLetterBatch` body, the code as the tag (consumers can filter on it) and as `dmp_error_code`, the
 * devices as keys (RocketMQ's key lookup finds a device's batches; at most {@link MAX_KEYS}).
 */
export function toDeadLetterBatch(
  topic: string,
  instance: string,
  letters: readonly PackedDeadLetter[],
): OutgoingMessage {
  const code = letters[0]?.code ?? HandOffErrorCode.Rejected;
  const keys = [...new Set(letters.flatMap((l) => (l.deviceId ? [l.deviceId] : [])))].slice(0, MAX_KEYS);
  return {
    topic,
    body: encodeDeadLetterBatch(letters.map((l) => l.entry)),
    tag: TAG_PATTERN.test(code) ? code : HandOffErrorCode.Rejected,
    ...(keys.length > 0 ? { keys } : {}),
    properties: {
      [DeadLetterProperty.format]: DEAD_LETTER_BATCH_FORMAT,
      [DeadLetterProperty.count]: String(letters.length),
      [DeadLetterProperty.errorCode]: deadLetterPropertyValue(code),
      [DeadLetterProperty.source]: DEAD_LETTER_SOURCE_MQTT,
      [DeadLetterProperty.sourceInstance]: deadLetterPropertyValue(instance),
    },
  };
}

/** Protobuf framing of an entry and its map entries, generously. */
const ENTRY_OVERHEAD = 64;
/** RocketMQ keys travel in one property (16 KiB for all properties): device ids are ≤ 64 characters. */
const MAX_KEYS = 32;

/** Tags are plain codes; anything else (a code from elsewhere) gets a generic tag, the code stays a property. */
const TAG_PATTERN = /^[A-Z0-9_]{1,64}$/;
