import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { DeadLetterRecord } from '@dmp/clickhouse';
import { deadLetterQuery, parseSince, replayTarget } from './dead-letters';
import { fleetDeviceIds } from './devices';

describe('dmp dead-letters', () => {
  it('reads --since as a duration ago or an ISO time', () => {
    const now = 1_700_000_000_000;
    assert.equal(parseSince('10m', now), now - 600_000);
    assert.equal(parseSince('30s', now), now - 30_000);
    assert.equal(parseSince('2h', now), now - 7_200_000);
    assert.equal(parseSince('7d', now), now - 7 * 86_400_000);
    assert.equal(parseSince('2023-11-14T22:13:20Z', now), 1_700_000_000_000);
    assert.throws(() => parseSince('yesterday', now));
  });

  it('quotes every value it puts into SQL', () => {
    const sql = deadLetterQuery({ code: "x' OR 1=1 --", device: 'd\\', since: 5, limit: 10 });
    assert.match(sql, /error_code = 'x\\' OR 1=1 --'/);
    assert.match(sql, /device_id = 'd\\\\'/);
    assert.match(sql, /received_at_ms >= 5/);
    assert.match(sql, /FROM dead_letters FINAL/);
    assert.match(sql, /ORDER BY received_at_ms DESC, message_id\s+LIMIT 10$/);
    assert.match(deadLetterQuery({ limit: 1, oldestFirst: true }), /ORDER BY received_at_ms ASC/);
    assert.doesNotMatch(deadLetterQuery({ limit: 1 }), /WHERE/);
  });
});

describe('replayTarget', () => {
  const row = (overrides: Partial<DeadLetterRecord>): DeadLetterRecord => ({
    message_id: '01DEAD',
    received_at_ms: '1700000000000',
    source: 'rocketmq-consumer',
    source_instance: 'dmp_data',
    source_topic: 'dmp_telemetry_event',
    source_message_id: '01ORIGINAL',
    device_id: 'shard-3',
    error_code: 'DMP_ERR_STORAGE_UNAVAILABLE',
    error_message: 'ClickHouse away',
    content_type: '',
    payload: Buffer.from('pack').toString('base64'),
    payload_text: 'pack',
    payload_size: 4,
    properties: JSON.stringify({
      dmp_telemetry_format: 'pack',
      dmp_error_code: 'DMP_ERR_STORAGE_UNAVAILABLE',
      dmp_error_message: 'ClickHouse away',
      dmp_dead_letter_reason: 'max_delivery_attempts',
      dmp_source_topic: 'dmp_telemetry_event',
      dmp_source_message_id: '01ORIGINAL',
      dmp_source_message_group: 'shard-3',
      dmp_consumer_group: 'dmp_data',
      dmp_delivery_attempt: '1000',
    }),
    ...overrides,
  });

  it("sends a consumer's dead letter back to its topic and group, with the original properties, for that group only", () => {
    assert.deepEqual(replayTarget(row({})), {
      via: 'rocketmq',
      topic: 'dmp_telemetry_event',
      group: 'dmp_data',
      messageGroup: 'shard-3',
      properties: {
        dmp_telemetry_format: 'pack',
        dmp_replay_of: '01DEAD',
        dmp_replay_for_group: 'dmp_data',
      },
    });
    // A message of a NORMAL topic had no message group.
    const normal = replayTarget(row({ properties: JSON.stringify({ dmp_consumer_group: 'g' }) }));
    assert.equal(normal.via === 'rocketmq' && normal.messageGroup, undefined);
  });

  it("publishes dmp-mqtt's refusals on their device topic, and says why others are not replayed", () => {
    assert.deepEqual(replayTarget(row({ source: 'dmp-mqtt', source_topic: 'devices/d-1/telemetry' })), {
      via: 'mqtt',
      topic: 'devices/d-1/telemetry',
    });
    assert.equal(replayTarget(row({ source: 'dmp-mqtt', source_topic: 'devices/+/x' })).via, 'none');
    assert.equal(replayTarget(row({ source: 'dmp-data' })).via, 'none');
    assert.equal(replayTarget(row({ source_topic: '' })).via, 'none');
    assert.equal(replayTarget(row({ properties: '{' })).via, 'none');
  });
});

describe('dmp devices', () => {
  it('names a fleet the way the simulator does', () => {
    assert.deepEqual(fleetDeviceIds('sim', 3), ['sim-0', 'sim-1', 'sim-2']);
    assert.deepEqual(fleetDeviceIds('sim', 11).slice(9), ['sim-09', 'sim-10']);
  });
});
