import { cleaningSection } from '@dmp/config';
import {
  CleanCode,
  cleanTelemetry,
  DEAD_LETTER_BATCH_FORMAT,
  DeadLetterProperty,
  decodeDeadLetterBatch,
} from '@dmp/contracts';
import type { RocketMqMessage } from '@dmp/messaging';
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { toDeadLetterRows } from '../dead-letters/dead-letter-row';
import {
  CleaningDeadLetterProperty,
  serializeEntry,
  toCleaningDeadLetter,
  toCleaningDeadLetterBatch,
} from './cleaning-dead-letter';

const NOW = Date.UTC(2026, 10, 21, 10, 0, 0);
const LIMITS = cleaningSection.parse({ DATA_CLEAN_METRIC_RANGES: '{"hum": [0, 100]}' });
const SOURCE = {
  topic: 'dmp_telemetry_event',
  messageId: '01ABCDEF',
  messageGroup: 'shard-3',
  deliveryAttempt: 2,
};
const TRACEPARENT = '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01';

const body = (metrics: string, extra = '') =>
  `{"deviceId":"dev-001","messageId":"m-1","kind":"telemetry","ts":${NOW - 1000},"metrics":{${metrics}},"receivedAt":${NOW - 900}${extra}}`;

/** The batch as dmp-data's dead-letter consumer receives it. */
function received(message: ReturnType<typeof toCleaningDeadLetterBatch>): RocketMqMessage {
  return {
    topic: message.topic,
    messageId: '01DEADLETTER',
    body: message.body,
    keys: message.keys ?? [],
    properties: { ...message.properties, traceparent: TRACEPARENT.replace('b7ad', 'aaaa') },
    deliveryAttempt: 1,
    bornTimestamp: new Date(NOW + 5),
  };
}

describe('cleaning dead letters', () => {
  it('serializes an entry without losing ±Infinity (1e999, which parses back to it)', () => {
    const text = body('"temp":1e999,"low":-1e999,"hum":40,"mode":"a\\"b"');
    const parsed: unknown = JSON.parse(text);
    const json = serializeEntry(parsed).toString('utf8');
    assert.deepEqual(JSON.parse(json), parsed);
    assert.match(json, /"temp":1e999,"low":-1e999/);
    assert.equal(
      serializeEntry({ a: NaN, b: undefined, c: [undefined, 1] }).toString(),
      '{"a":null,"c":[null,1]}',
    );
    assert.equal(serializeEntry(undefined).toString(), 'null');
  });

  it('a partly cleaned entry becomes one dead_letters row: code, readable message, original entry, context', () => {
    const text = body('"temp":1e999,"hum":140,"door":true');
    const entry: unknown = JSON.parse(text);
    const result = cleanTelemetry(entry, LIMITS, NOW);
    const letter = toCleaningDeadLetter(result, entry, SOURCE, 'dmp_data', NOW, TRACEPARENT);
    assert.equal(letter.code, CleanCode.NotFinite);
    assert.deepEqual(letter.codes, [CleanCode.NotFinite, CleanCode.OutOfRange]);
    assert.equal(letter.deviceId, 'dev-001');

    const batch = toCleaningDeadLetterBatch('dmp_dead_letter', 'dmp_data', [letter]);
    assert.equal(batch.tag, CleanCode.NotFinite);
    assert.deepEqual(batch.keys, ['dev-001']);
    assert.equal(batch.properties?.[DeadLetterProperty.format], DEAD_LETTER_BATCH_FORMAT);
    assert.equal(batch.properties?.[DeadLetterProperty.count], '1');

    const [row, ...more] = toDeadLetterRows(received(batch), NOW + 10);
    assert.equal(more.length, 0);
    assert.ok(row);
    assert.equal(row.message_id, '01DEADLETTER.0');
    assert.equal(row.error_code, CleanCode.NotFinite);
    assert.equal(
      row.error_message,
      'removed 2 of 3 metric(s), 1 stored: temp (DMP_ERR_CLEAN_NOT_FINITE: Infinity is not a finite number); ' +
        'hum (DMP_ERR_CLEAN_OUT_OF_RANGE: 140 is outside [0, 100])',
    );
    assert.equal(row.source, 'dmp-data');
    assert.equal(row.source_instance, 'dmp_data');
    assert.equal(row.source_topic, 'dmp_telemetry_event');
    assert.equal(row.source_message_id, 'm-1');
    assert.equal(row.device_id, 'dev-001');
    assert.equal(row.received_at_ms, NOW - 900);
    assert.equal(row.content_type, 'application/json');
    assert.equal(row.trace_id, '0af7651916cd43dd8448eb211c80319c');
    assert.deepEqual(JSON.parse(row.payload_text), entry);
    assert.equal(row.payload_size, Buffer.byteLength(row.payload_text));
    const properties = JSON.parse(row.properties) as Record<string, string>;
    assert.equal(properties[CleaningDeadLetterProperty.outcome], 'cleaned');
    assert.equal(
      properties[CleaningDeadLetterProperty.codes],
      'DMP_ERR_CLEAN_NOT_FINITE,DMP_ERR_CLEAN_OUT_OF_RANGE',
    );
    assert.equal(properties[CleaningDeadLetterProperty.metrics], 'temp,hum');
    assert.equal(properties[CleaningDeadLetterProperty.rocketmqMessageId], '01ABCDEF');
    assert.equal(properties[CleaningDeadLetterProperty.rocketmqMessageGroup], 'shard-3');
    assert.equal(properties[DeadLetterProperty.deliveryAttempt], '2');
  });

  it('keeps the received bytes when given, and refused entries without a device or times still make a row', () => {
    const text = `{"messageId":"m-2","metrics":{"temp":1}, "note":"\\u0001"}`;
    const entry: unknown = JSON.parse(text);
    const result = cleanTelemetry(entry, LIMITS, NOW);
    assert.equal(result.kind, 'rejected');
    const letter = toCleaningDeadLetter(
      result,
      entry,
      { topic: 'dmp_telemetry_event', messageId: '01XYZ', payload: Buffer.from(text) },
      'dmp_data',
      NOW,
    );
    const [row] = toDeadLetterRows(
      received(toCleaningDeadLetterBatch('dmp_dead_letter', 'dmp_data', [letter])),
    );
    assert.ok(row);
    assert.equal(row.error_code, CleanCode.MissingField);
    assert.match(row.error_message, /^message refused: missing deviceId, kind, ts, receivedAt — deviceId: /);
    assert.equal(row.payload_text, text);
    assert.equal(row.device_id, '', 'no device, and not the shard-like message group either');
    assert.equal(row.source_message_id, 'm-2');
    assert.equal(row.received_at_ms, NOW);
    const properties = JSON.parse(row.properties) as Record<string, string>;
    assert.equal(properties[CleaningDeadLetterProperty.outcome], 'rejected');
    assert.equal(properties[CleaningDeadLetterProperty.metrics], undefined);
  });

  it('names the removals a refused message also had, once', () => {
    const entry: unknown = JSON.parse(body('"temp":1e999,"hum":1', `,"seq":-1`));
    const refused = toCleaningDeadLetter(cleanTelemetry(entry, LIMITS, NOW), entry, SOURCE, 'g', NOW);
    assert.equal(refused.code, CleanCode.InvalidField);
    assert.deepEqual(refused.codes, [CleanCode.InvalidField, CleanCode.NotFinite]);
    assert.match(
      refused.entry.properties[DeadLetterProperty.errorMessage],
      /^message refused: seq: .*; besides, metrics to remove: temp \(DMP_ERR_CLEAN_NOT_FINITE: Infinity is not a finite number\)$/,
    );

    const empty: unknown = JSON.parse(body('"temp":1e999'));
    const none = toCleaningDeadLetter(cleanTelemetry(empty, LIMITS, NOW), empty, SOURCE, 'g', NOW);
    assert.equal(
      none.entry.properties[DeadLetterProperty.errorMessage],
      'message refused: all 1 metric(s) removed: temp (DMP_ERR_CLEAN_NOT_FINITE: Infinity is not a finite number)',
    );
  });

  it('a batch of several entries: one row each, a mixed tag, each row its own code', () => {
    const letters = ['"temp":1e999,"a":1', '"hum":-1,"a":1', '"hum":-2,"a":1'].map((metrics, i) => {
      const entry: unknown = JSON.parse(body(metrics).replace('"m-1"', `"m-${i}"`));
      return toCleaningDeadLetter(cleanTelemetry(entry, LIMITS, NOW), entry, SOURCE, 'dmp_data', NOW);
    });
    const batch = toCleaningDeadLetterBatch('dmp_dead_letter', 'dmp_data', letters);
    assert.equal(batch.tag, 'DMP_ERR_CLEAN');
    assert.deepEqual(batch.keys, ['dev-001']);
    assert.equal(decodeDeadLetterBatch(batch.body).length, 3);
    const rows = toDeadLetterRows(received(batch));
    assert.deepEqual(
      rows.map((r) => [r.message_id, r.error_code, r.source_message_id]),
      [
        ['01DEADLETTER.0', CleanCode.NotFinite, 'm-0'],
        ['01DEADLETTER.1', CleanCode.OutOfRange, 'm-1'],
        ['01DEADLETTER.2', CleanCode.OutOfRange, 'm-2'],
      ],
    );
    assert.equal(
      toCleaningDeadLetterBatch('dmp_dead_letter', 'dmp_data', letters.slice(1)).tag,
      CleanCode.OutOfRange,
    );
  });

  it('refuses to make a dead letter of an entry cleaning did not change', () => {
    const entry: unknown = JSON.parse(body('"temp":1'));
    assert.throws(() => toCleaningDeadLetter(cleanTelemetry(entry, LIMITS, NOW), entry, SOURCE, 'g', NOW));
  });
});
