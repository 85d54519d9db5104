import { stringLiteral, Tables, type MinuteMarkRow, type TelemetryRawRow } from '@dmp/clickhouse';

/** A (device, minute) to recompute; `minute` in Unix seconds. */
export interface MinuteKey {
  device_id: string;
  minute: number;
}

export const minuteOf = (seconds: number): number => seconds - (seconds % 60);

/** One string per (device, minute), for maps. */
export const minuteKeyOf = (key: MinuteKey): string => `${key.device_id}\u0000${key.minute}`;

/** The (device, minute)s a batch touched with numeric metrics, once each: the marks it leaves. */
export function minuteMarks(rows: Iterable<TelemetryRawRow>): MinuteMarkRow[] {
  const marks = new Map<string, MinuteMarkRow>();
  for (const row of rows) {
    if (row.metric_names.length === 0) continue;
    const mark = { device_id: row.device_id, minute: minuteOf(row.ts) };
    marks.set(minuteKeyOf(mark), mark);
  }
  return [...marks.values()];
}

/**
 * Days of minutes recomputed from `telemetry_1m_source`; older ones from `telemetry_raw`. One more day is
 * kept; migration 007 copies that many (3) as a literal.
 */
export const SOURCE_DAYS = 2;

/**
 * The table a recomputation statement reads. `recent`: keys of one minute, from `telemetry_1m_source`
 * (ordered by minute, then device). `raw`: keys of any minutes, from `telemetry_raw` (ordered by device).
 */
export const RECOMPUTE_SOURCES = ['recent', 'raw'] as const;

export interface RecomputeBatch {
  source: (typeof RECOMPUTE_SOURCES)[number];
  keys: MinuteKey[];
}

/**
 * Recomputes the aggregates of a batch's (device, minute)s from deduplicated raw rows. Ties on the
 * device timestamp are broken by message_id, so the first/last values are the same whatever order
 * rows were inserted in; the result is exactly what a recomputation from `telemetry_raw FINAL`
 * gives. `computedAtMs` (the server time the snapshot starts at, or later) versions the rows.
 * Only key columns are filtered before the FINAL collapse, so it keeps its meaning.
 */
export function recomputeSql({ source, keys }: RecomputeBatch, computedAtMs: number): string {
  if (keys.length === 0) throw new Error('no minutes to recompute');
  const devices = [...new Set(keys.map((k) => k.device_id))].map(stringLiteral).join(', ');
  const minutes = keys.map((k) => k.minute);
  const from = Math.min(...minutes);
  const to = Math.max(...minutes) + 60;
  const recent = source === 'recent';
  if (recent && from + 60 !== to) throw new Error('a recent batch holds one minute');
  const rows = recent
    ? `SELECT device_id, minute, ts_ms, (ts_ms, message_id) AS order_key,
           tenant_id, product_id, site_id, metric, value
    FROM ${Tables.minuteSource} FINAL
    ARRAY JOIN metric_names AS metric, metric_values AS value
    WHERE minute = toDateTime(${from}) AND device_id IN (${devices})`
    : `SELECT device_id, toStartOfMinute(ts) AS minute, ts_ms, (ts_ms, message_id) AS order_key,
           tenant_id, product_id, site_id, metric, value
    FROM ${Tables.raw} FINAL
    ARRAY JOIN metric_names AS metric, metric_values AS value
    WHERE device_id IN (${devices}) AND ts >= toDateTime(${from}) AND ts < toDateTime(${to})`;
  // A raw batch's devices × minutes cover more (device, minute)s than its keys: keep only those.
  const keysOnly = recent
    ? ''
    : `WHERE (device_id, minute) IN (${keys
        .map((k) => `(${stringLiteral(k.device_id)}, toDateTime(${k.minute}))`)
        .join(', ')})\n`;
  return `INSERT INTO ${Tables.minute}
  (device_id, metric, minute, tenant_id, product_id, site_id, samples, value_sum, value_min, value_max,
   value_first, value_last, first_ts_ms, last_ts_ms, computed_at_ms)
SELECT device_id, metric, minute,
       argMax(tenant_id, order_key), argMax(product_id, order_key), argMax(site_id, order_key),
       count(), sum(value), min(value), max(value),
       argMin(value, order_key), argMax(value, order_key),
       min(ts_ms), max(ts_ms), ${Math.floor(computedAtMs)}
FROM
(
    ${rows}
)
${keysOnly}GROUP BY device_id, metric, minute`;
}

/**
 * Cuts the due (device, minute)s into statements of at most `maxKeys`, in (minute, device) order, so
 * a statement's keys lie together in its table's sort order and it reads only their granules (spread
 * over the whole table otherwise). Minutes from `recentFrom` on are read from telemetry_1m_source,
 * one minute per statement; older ones from telemetry_raw.
 */
export function recomputeBatches(
  due: readonly MinuteKey[],
  maxKeys: number,
  recentFrom: number,
): RecomputeBatch[] {
  const sorted = [...due].sort(
    (a, b) => a.minute - b.minute || (a.device_id < b.device_id ? -1 : a.device_id > b.device_id ? 1 : 0),
  );
  const batches: RecomputeBatch[] = [];
  for (const key of sorted) {
    const source = key.minute >= recentFrom ? 'recent' : 'raw';
    const last = batches.at(-1);
    const fits =
      last?.source === source &&
      last.keys.length < maxKeys &&
      (source === 'raw' || last.keys[0].minute === key.minute);
    if (fits) last.keys.push(key);
    else batches.push({ source, keys: [key] });
  }
  return batches;
}

/** Minutes starting at or before this (server seconds) are due: they ended more than the lateness ago. */
export const watermarkOf = (nowSeconds: number, latenessSeconds: number): number =>
  nowSeconds - 60 - latenessSeconds;

/** Cuts the log into pages of at most `maxMarks` marks (whole seconds, so one second may exceed it). */
export function pageEnds(
  seconds: readonly { second: number; marks: number }[],
  until: number,
  maxMarks: number,
): number[] {
  const ends: number[] = [];
  let count = 0;
  for (const { second, marks } of seconds) {
    if (count > 0 && count + marks > maxMarks) {
      ends.push(second);
      count = 0;
    }
    count += marks;
  }
  ends.push(until);
  return ends;
}

/** Marks per second of `marked_at` in [fromSeconds, toSeconds): to cut the log into pages. */
export function marksPerSecondSql(fromSeconds: number, toSeconds: number): string {
  return `SELECT toUInt32(marked_at) AS second, count() AS marks
FROM ${Tables.minuteMarks}
WHERE marked_at >= toDateTime(${fromSeconds}) AND marked_at < toDateTime(${toSeconds})
GROUP BY second
ORDER BY second`;
}

/** The (device, minute)s marked in [fromSeconds, toSeconds), with their first and last mark. */
export function markedMinutesSql(fromSeconds: number, toSeconds: number): string {
  return `SELECT device_id, toUInt32(minute) AS minute,
       toUInt32(min(marked_at)) AS first_marked, toUInt32(max(marked_at)) AS last_marked
FROM ${Tables.minuteMarks}
WHERE marked_at >= toDateTime(${fromSeconds}) AND marked_at < toDateTime(${toSeconds})
GROUP BY device_id, minute`;
}
