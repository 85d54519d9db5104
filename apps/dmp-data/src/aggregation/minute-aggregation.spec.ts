import { toTelemetryRows } from '@dmp/clickhouse';
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  markedMinutesSql,
  marksPerSecondSql,
  minuteMarks,
  minuteOf,
  pageEnds,
  recomputeBatches,
  recomputeSql,
} from './minute-aggregation';

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

describe('minuteMarks', () => {
  it('marks each (device, minute) with numeric metrics once', () => {
    const t = Date.UTC(2026, 0, 1, 12, 0, 0);
    const marks = minuteMarks([
      raw('a', t + 1_000, { x: 1 }),
      raw('a', t + 59_999, { x: 2 }),
      raw('a', t + 60_000, { x: 3 }),
      raw('b', t + 5_000, { on: true }),
      raw('c', t, { mode: 'text only' }),
    ]);
    assert.deepEqual(marks, [
      { device_id: 'a', minute: t / 1000 },
      { device_id: 'a', minute: t / 1000 + 60 },
      { device_id: 'b', minute: t / 1000 },
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
      {
        source: 'raw',
        keys: [
          { device_id: "o'brien", minute: 120 },
          { device_id: 'b', minute: 60 },
        ],
      },
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
    assert.throws(() => recomputeSql({ source: 'raw', keys: [] }, 0));
  });

  it('reads a recent minute from telemetry_1m_source by minute and devices, one minute per statement', () => {
    const keys = [
      { device_id: 'a', minute: 120 },
      { device_id: 'b', minute: 120 },
    ];
    const sql = recomputeSql({ source: 'recent', keys }, 5_000);
    assert.match(sql, /SELECT device_id, minute, ts_ms,/);
    assert.match(sql, /FROM telemetry_1m_source FINAL/);
    assert.match(sql, /WHERE minute = toDateTime\(120\) AND device_id IN \('a', 'b'\)\n\)\nGROUP BY/);
    assert.throws(
      () => recomputeSql({ source: 'recent', keys: [...keys, { device_id: 'a', minute: 180 }] }, 5_000),
      /one minute/,
    );
  });

  it('reads the mark log by insertion time, in the half-open range asked', () => {
    assert.match(
      marksPerSecondSql(100, 200),
      /FROM telemetry_1m_marks\nWHERE marked_at >= toDateTime\(100\) AND marked_at < toDateTime\(200\)\nGROUP BY second/,
    );
    assert.match(
      markedMinutesSql(100, 200),
      /min\(marked_at\)\) AS first_marked[\s\S]*WHERE marked_at >= toDateTime\(100\) AND marked_at < toDateTime\(200\)\nGROUP BY device_id, minute/,
    );
  });
});

describe('recomputeBatches', () => {
  const key = (device_id: string, minute: number) => ({ device_id, minute });

  it('cuts the due minutes in (minute, device) order into statements of at most maxKeys', () => {
    const due = [key('c', 120), key('a', 180), key('b', 120), key('a', 120), key('b', 180), key('d', 120)];
    assert.deepEqual(recomputeBatches(due, 2, 0), [
      { source: 'recent', keys: [key('a', 120), key('b', 120)] },
      { source: 'recent', keys: [key('c', 120), key('d', 120)] },
      { source: 'recent', keys: [key('a', 180), key('b', 180)] },
    ]);
  });

  it('reads minutes before recentFrom from telemetry_raw, several minutes per statement', () => {
    const due = [key('a', 240), key('b', 60), key('a', 60), key('b', 120), key('b', 180)];
    assert.deepEqual(recomputeBatches(due, 10, 180), [
      { source: 'raw', keys: [key('a', 60), key('b', 60), key('b', 120)] },
      { source: 'recent', keys: [key('b', 180)] },
      { source: 'recent', keys: [key('a', 240)] },
    ]);
    assert.deepEqual(recomputeBatches([], 10, 180), []);
  });
});

describe('reading the mark log', () => {
  it('cuts pages at whole seconds of at most maxMarks marks, the last ending where reading stops', () => {
    const seconds = [
      { second: 10, marks: 4 },
      { second: 11, marks: 3 },
      { second: 12, marks: 9 },
      { second: 14, marks: 1 },
    ];
    assert.deepEqual(pageEnds(seconds, 20, 8), [12, 14, 20]);
    assert.deepEqual(pageEnds(seconds, 20, 100), [20]);
    assert.deepEqual(pageEnds([], 20, 8), [20]);
  });
});
