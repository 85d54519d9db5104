import type { DeadLetterRow } from '@dmp/clickhouse';
import {
  DEAD_LETTER_SOURCE_CONSUMER,
  deadLetterPayload,
  DeadLetterProperty,
  decodeDeadLetterBatch,
  errorMessage,
  isDeadLetterBatch,
  StorageErrorCode,
} from '@dmp/contracts';
import type { RocketMqMessage } from '@dmp/messaging';

const utf8 = new TextDecoder('utf-8', { fatal: true });
const TRACEPARENT = /^[0-9a-f]{2}-([0-9a-f]{32})-[0-9a-f]{16}-[0-9a-f]{2}$/;

/**
 * The rows of one RocketMQ dead letter: one for a single dead letter, one per entry for a batch
 * (dmp-mqtt's). An entry's row id is the RocketMQ message id and its index (`<id>.<n>`), so a
 * redelivered batch collapses into the same rows. A batch whose body cannot be decoded is still stored,
 * as one row holding the body and saying why.
 */
export function toDeadLetterRows(message: RocketMqMessage, now = Date.now()): DeadLetterRow[] {
  if (!isDeadLetterBatch(message.properties)) return [toDeadLetterRow(message, now)];
  const born = message.bornTimestamp?.getTime();
  try {
    return decodeDeadLetterBatch(message.body).map((entry, index) =>
      rowOf(
        `${message.messageId}.${index}`,
        // The batch's own trace context (its send span) unless the entry carries its message's.
        { ...pick(message.properties, 'traceparent'), ...entry.properties },
        entry.payload,
        born,
        now,
      ),
    );
  } catch (error) {
    const row = toDeadLetterRow(message, now);
    return [
      {
        ...row,
        error_message: `undecodable dead-letter batch (${errorMessage(error)}); the body is the batch`,
      },
    ];
  }
}

/**
 * A single dead letter as a row: dmp-mqtt's (reason, MQTT topic, device, raw payload) or a RocketMQ
 * consumer's (reason, source topic and message id, consumer group, message group as the device).
 * Tolerant: a dead letter must be storable whatever it lacks.
 */
export function toDeadLetterRow(message: RocketMqMessage, now = Date.now()): DeadLetterRow {
  const p = message.properties;
  return rowOf(
    message.messageId,
    p,
    deadLetterPayload(message.body, p),
    message.bornTimestamp?.getTime(),
    now,
  );
}

function rowOf(
  id: string,
  p: Readonly<Record<string, string>>,
  payload: Buffer,
  born: number | undefined,
  now: number,
): DeadLetterRow {
  const receivedAtMs = epochMillis(p[DeadLetterProperty.receivedAt]) ?? born ?? now;
  const consumerGroup = p[DeadLetterProperty.consumerGroup] ?? '';
  let text: string;
  try {
    text = utf8.decode(payload);
  } catch {
    text = '';
  }
  return {
    message_id: id,
    received_at: Math.floor(receivedAtMs / 1000),
    received_at_ms: receivedAtMs,
    dead_lettered_at_ms: born ?? now,
    source: p[DeadLetterProperty.source] || (consumerGroup ? DEAD_LETTER_SOURCE_CONSUMER : 'unknown'),
    source_instance: p[DeadLetterProperty.sourceInstance] || consumerGroup,
    source_topic: p[DeadLetterProperty.sourceTopic] ?? '',
    source_message_id: p[DeadLetterProperty.sourceMessageId] ?? '',
    device_id: p[DeadLetterProperty.deviceId] || p[DeadLetterProperty.sourceMessageGroup] || '',
    error_code: p[DeadLetterProperty.errorCode] || StorageErrorCode.Unknown,
    error_message: p[DeadLetterProperty.errorMessage] ?? '',
    content_type: p[DeadLetterProperty.contentType] ?? '',
    payload: payload.toString('base64'),
    payload_text: text,
    payload_size: payload.length,
    properties: JSON.stringify(p),
    trace_id: TRACEPARENT.exec(p.traceparent ?? '')?.[1] ?? '',
    inserted_at: Math.floor(now / 1000),
  };
}

const pick = (properties: Readonly<Record<string, string>>, name: string) =>
  properties[name] === undefined ? {} : { [name]: properties[name] };

function epochMillis(value: string | undefined): number | undefined {
  if (!value || !/^\d{1,16}$/.test(value)) return undefined;
  const ms = Number(value);
  return ms > 0 ? ms : undefined;
}
