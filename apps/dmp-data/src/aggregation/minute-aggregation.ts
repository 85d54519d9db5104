import { stringLiteral, Tables, type DirtyMinuteRow, type TelemetryRawRow } from '@dmp/clickhouse';

/** A (device, minute) to recompute; `minute` in Unix seconds. */
export interface MinuteKey {
  device_id: string;
  minute: number;
}

export const minuteOf = (seconds: number): number => seconds - (seconds % 60);

/** The (device, minute)s a batch touched with numeric metrics, once each: the marks it leaves. */
export function dirtyMinutes(rows: Iterable<TelemetryRawRow>): DirtyMinuteRow[] {
  const marks = new Map<string, DirtyMinuteRow>();
  for (const row of rows) {
    if (row.metric_names.length === 0) continue;
    const minute = minuteOf(row.ts);
    marks.set(`${row.device_id}\u0000${minute}`, { device_id: row.device_id, minute, pending: 1 });
  }
  return [...marks.values()];
}

/**
 * Recomputes the aggregates of the given (device, minute)s from deduplicated raw rows. Ties on the
 * device timestamp are broken by message_id, so the first/last values are the same whatever order
 * rows were inserted in; the result is exactly what a recomputation from `telemetry_raw FINAL`
 * gives. `computedAtMs` (the server time the snapshot starts at, or later) versions the rows.
 */
export function recomputeSql(keys: readonly MinuteKey[], computedAtMs: number): string {
  if (keys.length === 0) throw new Error('no minutes to recompute');
  const devices = [...new Set(keys.map((k) => k.device_id))].map(stringLiteral).join(', ');
  const minutes = keys.map((k) => k.minute);
  const from = Math.min(...minutes);
  const to = Math.max(...minutes) + 60;
  const tuples = keys.map((k) => `(${stringLiteral(k.device_id)}, toDateTime(${k.minute}))`).join(', ');
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
    SELECT device_id, toStartOfMinute(ts) AS minute, ts_ms, (ts_ms, message_id) AS order_key,
           tenant_id, product_id, site_id, metric, value
    FROM ${Tables.raw} FINAL
    ARRAY JOIN metric_names AS metric, metric_values AS value
    WHERE device_id IN (${devices}) AND ts >= toDateTime(${from}) AND ts < toDateTime(${to})
)
WHERE (device_id, minute) IN (${tuples})
GROUP BY device_id, metric, minute`;
}

/** Pending (device, minute)s whose minute ended more than `latenessSeconds` before `nowSeconds`. */
export function pendingMinutesSql(nowSeconds: number, latenessSeconds: number, limit: number): string {
  const watermark = nowSeconds - 60 - latenessSeconds;
  return `SELECT device_id, toUInt32(minute) AS minute
FROM ${Tables.dirtyMinutes}
WHERE minute <= toDateTime(${watermark})
GROUP BY device_id, minute
HAVING argMax(pending, ver) = 1
ORDER BY minute, device_id
LIMIT ${limit}`;
}
