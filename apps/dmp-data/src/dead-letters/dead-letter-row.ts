import type { DeadLetterRow } from '@dmp/clickhouse';
import { DeadLetterProperty, deadLetterPayload } from '@dmp/contracts';
import type { RocketMqMessage } from '@dmp/messaging';

const utf8 = new TextDecoder('utf-8', { fatal: true });
const TRACEPARENT = /^[0-9a-f]{2}-([0-9a-f]{32})-[0-9a-f]{16}-[0-9a-f]{2}$/;

/**
 * A dead letter as a row: dmp-mqtt's (reason, MQTT topic, device, raw payload) or a RocketMQ consumer's
 * (reason, source topic and message id, consumer group, message group as the device). Tolerant: a dead
 * letter must be storable whatever it lacks.
 */
export function toDeadLetterRow(message: RocketMqMessage, now = Date.now()): DeadLetterRow {
  const p = message.properties;
  const payload = deadLetterPayload(message.body, p);
  const born = message.bornTimestamp?.getTime();
  const receivedAtMs = epochMillis(p[DeadLetterProperty.receivedAt]) ?? born ?? now;
  const consumerGroup = p[DeadLetterProperty.consumerGroup] ?? '';
  let text: string;
  try {
    text = utf8.decode(payload);
  } catch {
    text = '';
  }
  return {
    message_id: message.messageId,
    received_at: Math.floor(receivedAtMs / 1000),
    received_at_ms: receivedAtMs,
    dead_lettered_at_ms: born ?? now,
    source: p[DeadLetterProperty.source] || (consumerGroup ? 'rocketmq-consumer' : 'unknown'),
    source_instance: p[DeadLetterProperty.sourceInstance] || consumerGroup,
    source_topic: p[DeadLetterProperty.sourceTopic] ?? '',
    source_message_id: p[DeadLetterProperty.sourceMessageId] ?? '',
    device_id: p[DeadLetterProperty.deviceId] || p[DeadLetterProperty.sourceMessageGroup] || '',
    error_code: p[DeadLetterProperty.errorCode] || 'DMP_ERR_UNKNOWN',
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

function epochMillis(value: string | undefined): number | undefined {
  if (!value || !/^\d{1,16}$/.test(value)) return undefined;
  const ms = Number(value);
  return ms > 0 ? ms : undefined;
}
