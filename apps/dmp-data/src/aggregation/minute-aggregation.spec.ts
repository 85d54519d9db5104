import { toTelemetryRows } from '@dmp/clickhouse';
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  markedMinutesSql,
  marksPerSecondSql,
  dueMinutes,
  EVERY_DEVICE,
  isWholeMinute,
  minuteMarks,
  minuteOf,
  pageEnds,
  recomputeBatches,
  recomputeSql,
  watermarkOf,
  type MarkedMinute,
  type MinuteKey,
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
  const t = Date.UTC(2026, 0, 1, 12, 0, 0);
  const minute = t / 1000;

  it('marks each minute not due yet once, for every device, whatever the number of devices', () => {
    // Now: 20 s into the minute; with 60 s of lateness this minute and the last are not due.
    const marks = minuteMarks(
      [
        raw('a', t + 1_000, { x: 1 }),
        raw('a', t + 19_999, { x: 2 }),
        raw('b', t - 30_000, { on: true }),
        raw('c', t + 5_000, { x: 3 }),
        raw('d', t, { mode: 'text only' }),
      ],
      minute + 20,
      60,
    );
    assert.deepEqual(marks, [
      { device_id: EVERY_DEVICE, minute },
      { device_id: EVERY_DEVICE, minute: minute - 60 },
    ]);
  });

  it('marks late data (its minute already due) per device, once each', () => {
    const now = minute + 20;
    const late = minute - 120; // due: it ended 100 s ago, more than the lateness
    const marks = minuteMarks(
      [
        raw('a', late * 1000 + 1_000, { x: 1 }),
        raw('a', late * 1000 + 59_999, { x: 2 }),
        raw('b', late * 1000, { x: 3 }),
        raw('a', t + 1_000, { x: 4 }),
        raw('c', late * 1000, { mode: 'text only' }),
      ],
      now,
      60,
    );
    assert.deepEqual(marks, [
      { device_id: 'a', minute: late },
      { device_id: 'b', minute: late },
      { device_id: EVERY_DEVICE, minute },
    ]);
    // The boundary is the aggregator's watermark: the minute at it is due, the one after it is not.
    const lastDue = minuteOf(watermarkOf(now, 60));
    assert.deepEqual(
      minuteMarks([raw('a', lastDue * 1000, { x: 1 }), raw('a', (lastDue + 60) * 1000, { x: 1 })], now, 60),
      [
        { device_id: 'a', minute: lastDue },
        { device_id: EVERY_DEVICE, minute: lastDue + 60 },
      ],
    );
  });

  it('covers every (device, minute) a batch touched, whatever the clock says', () => {
    const rows = [
      raw('a', t + 1_000, { x: 1 }),
      raw('b', t - 200_000, { x: 2 }),
      raw('c', t + 90_000, { y: 1 }),
    ];
    for (const now of [0, minute - 3_600, minute, minute + 60, minute + 3_600, 2 ** 32]) {
      const marks = minuteMarks(rows, now, 60);
      for (const row of rows)
        assert.ok(
          marks.some(
            (m) => m.minute === minuteOf(row.ts) && (m.device_id === row.device_id || isWholeMinute(m)),
          ),
          `now ${now}: ${row.device_id} at ${row.ts}`,
        );
    }
  });

  it('leaves the same marks for a redelivered batch (duplicates within it too)', () => {
    const batch = [raw('a', t + 1_000, { x: 1 }), raw('b', t - 200_000, { x: 2 })];
    assert.deepEqual(minuteMarks([...batch, ...batch], minute + 5, 60), minuteMarks(batch, minute + 5, 60));
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

  it('recomputes a whole minute without a device filter, alone in its statement', () => {
    const whole = { device_id: EVERY_DEVICE, minute: 120 };
    const recent = recomputeSql({ source: 'recent', keys: [whole] }, 5_000);
    assert.match(recent, /FROM telemetry_1m_source FINAL/);
    assert.match(recent, /WHERE minute = toDateTime\(120\)\n\)\nGROUP BY/);
    const old = recomputeSql({ source: 'raw', keys: [whole] }, 5_000);
    assert.match(old, /FROM telemetry_raw FINAL/);
    assert.match(old, /WHERE ts >= toDateTime\(120\) AND ts < toDateTime\(180\)\n\)\nGROUP BY/);
    assert.doesNotMatch(old, /device_id IN/);
    assert.throws(
      () => recomputeSql({ source: 'recent', keys: [whole, { device_id: 'a', minute: 120 }] }, 5_000),
      /alone/,
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

describe('recomputeBatches with whole minutes', () => {
  it('gives a whole minute a statement of its own, recent or raw', () => {
    const key = (device_id: string, minute: number) => ({ device_id, minute });
    const due = [key('a', 120), key(EVERY_DEVICE, 120), key('b', 120), key(EVERY_DEVICE, 60), key('c', 60)];
    assert.deepEqual(recomputeBatches(due, 10, 120), [
      { source: 'raw', keys: [key(EVERY_DEVICE, 60)] },
      { source: 'raw', keys: [key('c', 60)] },
      { source: 'recent', keys: [key(EVERY_DEVICE, 120)] },
      { source: 'recent', keys: [key('a', 120), key('b', 120)] },
    ]);
  });
});

describe('dueMinutes', () => {
  const marked = (
    device_id: string,
    minute: number,
    first_marked: number,
    last_marked = first_marked,
  ): MarkedMinute => ({
    device_id,
    minute,
    first_marked,
    last_marked,
  });
  const never = () => undefined;
  const recomputed =
    (at: Record<string, number>) =>
    (key: MinuteKey): number | undefined =>
      at[`${key.device_id}@${key.minute}`];

  it('asks for the due minutes and holds the cursor at the first mark of one not due', () => {
    const page = [
      marked('a', 60, 130),
      marked(EVERY_DEVICE, 120, 170, 185),
      marked(EVERY_DEVICE, 180, 200, 230),
    ];
    assert.deepEqual(dueMinutes(page, 120, never), {
      due: [
        { device_id: EVERY_DEVICE, minute: 120 },
        { device_id: 'a', minute: 60 },
      ],
      heldFrom: 200,
    });
    assert.equal(dueMinutes([], 120, never).heldFrom, Number.POSITIVE_INFINITY);
  });

  it('drops the devices of a whole minute due on the same page: it recomputes them', () => {
    const page = [marked('a', 60, 130), marked(EVERY_DEVICE, 60, 110), marked('b', 120, 140)];
    assert.deepEqual(dueMinutes(page, 120, never).due, [
      { device_id: EVERY_DEVICE, minute: 60 },
      { device_id: 'b', minute: 120 },
    ]);
  });

  it('skips what a snapshot taken after its last mark recomputed, the whole minute included', () => {
    // Recomputed at 150: marks before it are in that snapshot; one in the same second is not.
    const at = recomputed({ [`${EVERY_DEVICE}@60`]: 150, 'b@120': 150 });
    const page = [
      marked('a', 60, 130, 149),
      marked('c', 60, 130, 150),
      marked('b', 120, 140, 149),
      marked('d', 120, 140, 149),
      marked(EVERY_DEVICE, 60, 100, 149),
    ];
    assert.deepEqual(dueMinutes(page, 120, at).due, [
      { device_id: 'c', minute: 60 },
      { device_id: 'd', minute: 120 },
    ]);
    // Late data after that pass: marked again, recomputed again.
    assert.deepEqual(dueMinutes([marked('a', 60, 130, 151)], 120, at).due, [{ device_id: 'a', minute: 60 }]);
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
