import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { toTelemetryRows } from '../storage/telemetry-rows';
import { dirtyMinutes, minuteOf, pendingMinutesSql, recomputeSql } from './minute-aggregation';

const raw = (deviceId: string, ts: number, metrics: Record<string, number | string | boolean>) =>
  toTelemetryRows({
    deviceId,
    messageId: `${deviceId}-${ts}`,
    kind: 'telemetry',
    ts,
    metrics,
    receivedAt: ts,
    tenantId: '',
    productId: '',
    siteId: '',
  }).raw;

describe('dirtyMinutes', () => {
  it('marks each (device, minute) with numeric metrics once', () => {
    const t = Date.UTC(2026, 0, 1, 12, 0, 0);
    const marks = dirtyMinutes([
      raw('a', t + 1_000, { x: 1 }),
      raw('a', t + 59_999, { x: 2 }),
      raw('a', t + 60_000, { x: 3 }),
      raw('b', t + 5_000, { on: true }),
      raw('c', t, { mode: 'text only' }),
    ]);
    assert.deepEqual(marks, [
      { device_id: 'a', minute: t / 1000, pending: 1 },
      { device_id: 'a', minute: t / 1000 + 60, pending: 1 },
      { device_id: 'b', minute: t / 1000, pending: 1 },
    ]);
  });

  it('aligns minutes on the Unix minute', () => {
    assert.equal(minuteOf(1_700_000_000), 1_699_999_980);
    assert.equal(minuteOf(1_699_999_980), 1_699_999_980);
  });
});

describe('aggregation SQL', () => {
  it('recomputes only the requested (device, minute)s, quoting device ids', () => {
    const sql = recomputeSql(
      [
        { device_id: "o'brien", minute: 120 },
        { device_id: 'b', minute: 60 },
      ],
      5_000,
    );
    assert.match(sql, /FROM telemetry_raw FINAL/);
    assert.match(
      sql,
      /WHERE device_id IN \('o\\'brien', 'b'\) AND ts >= toDateTime\(60\) AND ts < toDateTime\(180\)/,
    );
    assert.match(
      sql,
      /\(device_id, minute\) IN \(\('o\\'brien', toDateTime\(120\)\), \('b', toDateTime\(60\)\)\)/,
    );
    assert.match(sql, /max\(ts_ms\), 5000\n/);
    assert.throws(() => recomputeSql([], 0));
  });

  it('selects pending minutes that ended before the watermark', () => {
    assert.match(
      pendingMinutesSql(1_000, 30, 10),
      /WHERE minute <= toDateTime\(910\)[\s\S]*HAVING argMax\(pending, ver\) = 1[\s\S]*LIMIT 10/,
    );
  });
});
