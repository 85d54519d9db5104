import { DEAD_LETTER_BATCH_FORMAT, encodeDeadLetterBatch } from '@dmp/contracts';
import type { RocketMqMessage } from '@dmp/messaging';
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { toDeadLetterRow, toDeadLetterRows } from './dead-letter-row';

const traceparent = '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01';

function message(overrides: Partial<RocketMqMessage>): RocketMqMessage {
  return {
    topic: 'dmp_dead_letter',
    messageId: '01ABCDEF',
    body: Buffer.from('x'),
    keys: [],
    properties: {},
    deliveryAttempt: 1,
    bornTimestamp: new Date(1_700_000_005_000),
    ...overrides,
  };
}

describe('toDeadLetterRow', () => {
  it("maps dmp-mqtt's dead letter: reason, MQTT topic, device, raw payload, trace", () => {
    const row = toDeadLetterRow(
      message({
        body: Buffer.from('{"messageId":'),
        properties: {
          dmp_error_code: 'DMP_ERR_MALFORMED_PAYLOAD',
          dmp_error_message: 'not JSON',
          dmp_source: 'dmp-mqtt',
          dmp_source_instance: 'dmp-mqtt-a',
          dmp_source_topic: 'devices/dev-1/telemetry',
          dmp_device_id: 'dev-1',
          dmp_received_at: '1700000000123',
          dmp_content_type: '',
          dmp_payload_size: '13',
          traceparent,
        },
      }),
      1_700_000_010_000,
    );
    assert.deepEqual(
      { ...row, properties: undefined },
      {
        message_id: '01ABCDEF',
        received_at: 1_700_000_000,
        received_at_ms: 1_700_000_000_123,
        dead_lettered_at_ms: 1_700_000_005_000,
        source: 'dmp-mqtt',
        source_instance: 'dmp-mqtt-a',
        source_topic: 'devices/dev-1/telemetry',
        source_message_id: '',
        device_id: 'dev-1',
        error_code: 'DMP_ERR_MALFORMED_PAYLOAD',
        error_message: 'not JSON',
        content_type: '',
        payload: Buffer.from('{"messageId":').toString('base64'),
        payload_text: '{"messageId":',
        payload_size: 13,
        trace_id: '4bf92f3577b34da6a3ce929d0e0e4736',
        inserted_at: 1_700_000_010,
        properties: undefined,
      },
    );
    assert.equal(
      (JSON.parse(row.properties) as Record<string, string>).dmp_source_topic,
      'devices/dev-1/telemetry',
    );
  });

  it('keeps binary payloads in base64 only, and gives the empty payload back', () => {
    const binary = toDeadLetterRow(message({ body: Buffer.from([0xff, 0xfe, 0x00]) }));
    assert.equal(binary.payload, Buffer.from([0xff, 0xfe, 0x00]).toString('base64'));
    assert.equal(binary.payload_text, '');
    const empty = toDeadLetterRow(message({ body: Buffer.from([0]), properties: { dmp_payload_size: '0' } }));
    assert.equal(empty.payload, '');
    assert.equal(empty.payload_size, 0);
  });

  it("maps a RocketMQ consumer's dead letter: consumer group as instance, message group as device", () => {
    const row = toDeadLetterRow(
      message({
        properties: {
          dmp_error_code: 'DMP_ERR_INVALID_MESSAGE',
          dmp_dead_letter_reason: 'non_retryable',
          dmp_source_topic: 'dmp_telemetry_event',
          dmp_source_message_id: 'AB12',
          dmp_consumer_group: 'dmp_data',
          dmp_source_message_group: 'dev-9',
        },
      }),
    );
    assert.equal(row.source, 'rocketmq-consumer');
    assert.equal(row.source_instance, 'dmp_data');
    assert.equal(row.device_id, 'dev-9');
    assert.equal(row.source_message_id, 'AB12');
    assert.equal(row.received_at_ms, 1_700_000_005_000, 'born timestamp when the source time is unknown');
  });

  it("maps each entry of dmp-mqtt's batch to a row of its own, id <RocketMQ id>.<index>", () => {
    const other = '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01';
    const body = encodeDeadLetterBatch([
      {
        properties: {
          dmp_error_code: 'DMP_ERR_UNKNOWN_DEVICE',
          dmp_source: 'dmp-mqtt',
          dmp_source_topic: 'devices/u-1/telemetry',
          dmp_device_id: 'u-1',
          dmp_received_at: '1700000000001',
          dmp_payload_size: '2',
          traceparent: other,
        },
        payload: Buffer.from('{}'),
      },
      {
        properties: { dmp_error_code: 'DMP_ERR_UNKNOWN_DEVICE', dmp_device_id: 'u-2', dmp_payload_size: '0' },
        payload: Buffer.alloc(0),
      },
    ]);
    const rows = toDeadLetterRows(
      message({
        body,
        properties: {
          dmp_dead_letter_format: DEAD_LETTER_BATCH_FORMAT,
          dmp_dead_letter_count: '2',
          traceparent,
        },
      }),
      1_700_000_010_000,
    );
    assert.deepEqual(
      rows.map((r) => [r.message_id, r.device_id, r.error_code, r.payload_text, r.payload_size, r.trace_id]),
      [
        ['01ABCDEF.0', 'u-1', 'DMP_ERR_UNKNOWN_DEVICE', '{}', 2, '0af7651916cd43dd8448eb211c80319c'],
        ['01ABCDEF.1', 'u-2', 'DMP_ERR_UNKNOWN_DEVICE', '', 0, '4bf92f3577b34da6a3ce929d0e0e4736'],
      ],
    );
    assert.equal(rows[0].received_at_ms, 1_700_000_000_001);
    assert.equal(rows[1].received_at_ms, 1_700_000_005_000, 'born timestamp when the entry has no time');
    assert.equal(rows[0].source_topic, 'devices/u-1/telemetry');
  });

  it('stores a batch it cannot decode as one row that says so', () => {
    const rows = toDeadLetterRows(
      message({
        body: Buffer.from([0x0a, 0xff, 0xff, 0xff]),
        properties: { dmp_dead_letter_format: DEAD_LETTER_BATCH_FORMAT, dmp_error_code: 'DMP_ERR_X' },
      }),
    );
    assert.equal(rows.length, 1);
    assert.equal(rows[0].message_id, '01ABCDEF');
    assert.match(rows[0].error_message, /undecodable dead-letter batch/);
    assert.equal(rows[0].payload, Buffer.from([0x0a, 0xff, 0xff, 0xff]).toString('base64'));
  });

  it('maps a single dead letter to one row', () => {
    assert.equal(toDeadLetterRows(message({})).length, 1);
  });
});
