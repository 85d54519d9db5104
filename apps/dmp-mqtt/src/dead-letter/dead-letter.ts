import {
  DEAD_LETTER_SOURCE_MQTT,
  DeadLetterProperty,
  deadLetterBody,
  deadLetterPropertyValue,
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

/**
 * The RocketMQ message for a refused device message: the raw payload as the body, the reason and the
 * context as properties (names in @dmp/contracts `DeadLetterProperty`, the same the RocketMQ consumer
 * uses for its own dead letters), the reason code also as the tag (consumers can filter on it), and the
 * device and message ids as keys (RocketMQ's key lookup finds them). Property values are made safe for
 * RocketMQ (no control characters, bounded length): topics and error details come from devices.
 */
export function toDeadLetter(topic: string, refused: RefusedMessage): OutgoingMessage {
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
  const messageId =
    refused.messageId !== undefined && MESSAGE_ID_PATTERN.test(refused.messageId)
      ? refused.messageId
      : undefined;
  if (messageId) properties[DeadLetterProperty.sourceMessageId] = messageId;
  const keys = [refused.deviceId, messageId].filter((key): key is string => key !== undefined);
  return {
    topic,
    body: deadLetterBody(refused.payload),
    tag: TAG_PATTERN.test(refused.code) ? refused.code : 'DMP_ERR_REJECTED',
    ...(keys.length > 0 ? { keys } : {}),
    properties,
  };
}

/** Tags are plain codes; anything else (a code from elsewhere) gets a generic tag, the code stays a property. */
const TAG_PATTERN = /^[A-Z0-9_]{1,64}$/;
