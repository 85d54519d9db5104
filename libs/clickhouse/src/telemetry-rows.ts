import type { NormalizedTelemetry } from '@dmp/contracts';
import type { TelemetryLatestRow, TelemetryRawRow } from './tables';

/** DateTime is UInt32 seconds: clamp device clocks that are wildly off instead of failing the insert. */
const MAX_DATETIME_SECONDS = 0xffffffff;
export const toDateTimeSeconds = (ms: number): number =>
  Math.min(Math.max(Math.floor(ms / 1000), 0), MAX_DATETIME_SECONDS);

export interface TelemetryRows {
  raw: TelemetryRawRow;
  latest: TelemetryLatestRow[];
}

/**
 * One message → its `telemetry_raw` row (numbers and booleans as 0/1 in `metric_*`, text in
 * `text_*`, both in the message's key order) and one `telemetry_latest` row per metric.
 * `insertedAt` (ms) is stamped again by the writer at the first insert attempt (a retry sends the same rows).
 */
export function toTelemetryRows(
  message: NormalizedTelemetry,
  insertedAtMs: number = Date.now(),
): TelemetryRows {
  const metricNames: string[] = [];
  const metricValues: number[] = [];
  const textNames: string[] = [];
  const textValues: string[] = [];
  const insertedAt = toDateTimeSeconds(insertedAtMs);
  const common = {
    device_id: message.deviceId,
    message_id: message.messageId,
    kind: message.kind,
    ts_ms: message.ts,
    tenant_id: message.tenantId,
    product_id: message.productId,
    site_id: message.siteId,
    inserted_at: insertedAt,
  };
  const latest: TelemetryLatestRow[] = [];
  for (const [metric, value] of Object.entries(message.metrics)) {
    if (typeof value === 'string') {
      textNames.push(metric);
      textValues.push(value);
      latest.push({ ...common, metric, value_type: 'text', value: 0, text_value: value });
    } else {
      const number = typeof value === 'boolean' ? Number(value) : value;
      metricNames.push(metric);
      metricValues.push(number);
      latest.push({
        ...common,
        metric,
        value_type: typeof value === 'boolean' ? 'bool' : 'number',
        value: number,
        text_value: '',
      });
    }
  }
  return {
    raw: {
      ...common,
      ts: toDateTimeSeconds(message.ts),
      seq: message.seq ?? null,
      metric_names: metricNames,
      metric_values: metricValues,
      text_names: textNames,
      text_values: textValues,
      received_at_ms: message.receivedAt,
    },
    latest,
  };
}

/**
 * Keeps, per (device_id, metric), only the rows with the newest ts_ms in a batch — all of them when
 * several share it, since the engine's tiebreak (a hash of message_id) decides those. Rows dropped
 * here could never win in `telemetry_latest` (version = ts_ms × 1024 + tiebreak), so the table
 * ends the same, with far fewer rows written.
 */
export function newestPerMetric(rows: Iterable<TelemetryLatestRow>): TelemetryLatestRow[] {
  const newest = new Map<string, TelemetryLatestRow[]>();
  for (const row of rows) {
    const key = `${row.device_id}\u0000${row.metric}`;
    const kept = newest.get(key);
    if (!kept || row.ts_ms > kept[0].ts_ms) newest.set(key, [row]);
    else if (row.ts_ms === kept[0].ts_ms && !kept.some((k) => k.message_id === row.message_id))
      kept.push(row);
  }
  return [...newest.values()].flat();
}
