import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { deadLetterQuery, parseSince } from './dead-letters';
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

describe('dmp devices', () => {
  it('names a fleet the way the simulator does', () => {
    assert.deepEqual(fleetDeviceIds('sim', 3), ['sim-0', 'sim-1', 'sim-2']);
    assert.deepEqual(fleetDeviceIds('sim', 11).slice(9), ['sim-09', 'sim-10']);
  });
});
