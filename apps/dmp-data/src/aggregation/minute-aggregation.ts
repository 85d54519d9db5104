import { stringLiteral, Tables, type MinuteMarkRow, type TelemetryRawRow } from '@dmp/clickhouse';

/** A (device, minute) to recompute; `minute` in Unix seconds. */
export interface MinuteKey {
  device_id: string;
  minute: number;
}

export const minuteOf = (seconds: number): number => seconds - (seconds % 60);

/** One string per (device, minute), for maps. */
export const minuteKeyOf = (key: MinuteKey): string => `${key.device_id}\u0000${key.minute}`;

/**
 * The `device_id` of a mark that covers every device of its minute. No device id is empty
 * (DEVICE_ID_PATTERN), so it cannot be mistaken for one.
 */
export const EVERY_DEVICE = '';

export const isWholeMinute = (key: MinuteKey): boolean => key.device_id === EVERY_DEVICE;

/**
 * The marks a batch leaves for the minutes it touched with numeric metrics, once each, deciding per
 * minute by the writer's clock (`nowSeconds`) against the aggregator's watermark:
 * - a minute not due yet (on-time data, nearly all of it): one mark for the whole minute, whatever
 *   the number of devices. Its pass recomputes every device of that minute from
 *   `telemetry_1m_source`, whose sort order starts with the minute. One row per batch and minute
 *   instead of one per device: with many devices, ≈ 1 row per message less.
 * - a minute already due (late data): one mark per device, so a late device recomputes only itself.
 * Either mark covers every (device, minute) the batch touched, so the clocks (writer against
 * server) decide only what a recomputation costs, never which minutes are recomputed.
 */
export function minuteMarks(
  rows: Iterable<TelemetryRawRow>,
  nowSeconds: number,
  latenessSeconds: number,
): MinuteMarkRow[] {
  const watermark = watermarkOf(nowSeconds, latenessSeconds);
  const marks = new Map<string, MinuteMarkRow>();
  for (const row of rows) {
    if (row.metric_names.length === 0) continue;
    const minute = minuteOf(row.ts);
    const mark = { device_id: minute > watermark ? EVERY_DEVICE : row.device_id, minute };
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
 * Only key columns are filtered before the FINAL collapse, so it keeps its meaning. A whole minute
 * (EVERY_DEVICE, alone in its batch) recomputes every device of it: from `telemetry_1m_source`, one
 * range of its sort order; from `telemetry_raw` (marked while recent, recomputed days later: rare), a
 * scan of its month.
 */
export function recomputeSql({ source, keys }: RecomputeBatch, computedAtMs: number): string {
  if (keys.length === 0) throw new Error('no minutes to recompute');
  const whole = keys.some(isWholeMinute);
  if (whole && keys.length > 1) throw new Error('a whole minute is recomputed alone');
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
    WHERE minute = toDateTime(${from})${whole ? '' : ` AND device_id IN (${devices})`}`
    : `SELECT device_id, toStartOfMinute(ts) AS minute, ts_ms, (ts_ms, message_id) AS order_key,
           tenant_id, product_id, site_id, metric, value
    FROM ${Tables.raw} FINAL
    ARRAY JOIN metric_names AS metric, metric_values AS value
    WHERE ${whole ? '' : `device_id IN (${devices}) AND `}ts >= toDateTime(${from}) AND ts < toDateTime(${to})`;
  // A raw batch's devices × minutes cover more (device, minute)s than its keys: keep only those.
  const keysOnly =
    recent || whole
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
 * one minute per statement; older ones from telemetry_raw. A whole minute is a statement of its own.
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
      !isWholeMinute(key) &&
      !isWholeMinute(last.keys[0]) &&
      (source === 'raw' || last.keys[0].minute === key.minute);
    if (fits) last.keys.push(key);
    else batches.push({ source, keys: [key] });
  }
  return batches;
}

/** A (device, minute) of the mark log, with the server times of its first and last mark (seconds). */
export interface MarkedMinute extends MinuteKey {
  first_marked: number;
  last_marked: number;
}

/**
 * What a page of the mark log asks for. Minutes after the watermark are not due: the earliest first
 * mark among them (`heldFrom`) holds the cursor, so their marks are read again. A due key is skipped
 * when a snapshot taken after its last mark already recomputed it (`recomputedAt`, the server second
 * the snapshot started at; a mark in that same second counts as after it), the whole minute's
 * snapshot included; and a device is skipped when its whole minute is due on this page.
 */
export function dueMinutes(
  marked: readonly MarkedMinute[],
  watermark: number,
  recomputedAt: (key: MinuteKey) => number | undefined,
): { due: MinuteKey[]; heldFrom: number } {
  let heldFrom = Number.POSITIVE_INFINITY;
  const wanted = (m: MarkedMinute) =>
    Math.max(recomputedAt(m) ?? 0, recomputedAt({ device_id: EVERY_DEVICE, minute: m.minute }) ?? 0) <=
    m.last_marked;
  const due: MinuteKey[] = [];
  const wholeDue = new Set<number>();
  for (const m of marked) {
    if (m.minute > watermark) heldFrom = Math.min(heldFrom, m.first_marked);
    else if (isWholeMinute(m) && wanted(m)) {
      wholeDue.add(m.minute);
      due.push({ device_id: m.device_id, minute: m.minute });
    }
  }
  for (const m of marked)
    if (m.minute <= watermark && !isWholeMinute(m) && !wholeDue.has(m.minute) && wanted(m))
      due.push({ device_id: m.device_id, minute: m.minute });
  return { due, heldFrom };
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
