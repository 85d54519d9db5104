import type { NormalizedTelemetry } from '@dmp/contracts';
import type { ClickHouseRepository } from '@dmp/clickhouse';

/** One row of `telemetry_1m`, as the tests compare it. */
export interface MinuteAggregate {
  device_id: string;
  metric: string;
  /** Unix seconds of the minute's start. */
  minute: number;
  samples: number;
  value_sum: number;
  value_min: number;
  value_max: number;
  value_first: number;
  value_last: number;
}

/** Orders aggregates by (device, metric, minute). */
export const byMinuteKey = (a: MinuteAggregate, b: MinuteAggregate) =>
  a.device_id.localeCompare(b.device_id) || a.metric.localeCompare(b.metric) || a.minute - b.minute;

/** Sums are compared to 1e-6: ClickHouse and JavaScript may add in different orders. */
export const roundedSum = (aggregate: MinuteAggregate): MinuteAggregate => ({
  ...aggregate,
  value_sum: Math.round(aggregate.value_sum * 1e6) / 1e6,
});

/** The aggregates computed straight from deduplicated raw rows, as an analyst would (docs/analysts.md). */
export const recomputedFromRaw = (where: string) => `(
  SELECT device_id, metric, toStartOfMinute(ts) AS minute, count() AS samples,
         sum(value) AS value_sum, min(value) AS value_min, max(value) AS value_max,
         argMin(value, (ts_ms, message_id)) AS value_first, argMax(value, (ts_ms, message_id)) AS value_last
  FROM telemetry_raw FINAL ARRAY JOIN metric_names AS metric, metric_values AS value
  WHERE ${where} GROUP BY device_id, metric, minute)`;

/** Reads the aggregates of `table` (`telemetry_1m FINAL` or recomputedFromRaw(…)) matching `where`, ordered. */
export async function readMinuteAggregates(
  repository: ClickHouseRepository,
  table: string,
  where: string,
): Promise<MinuteAggregate[]> {
  const rows = await repository.query<Record<keyof MinuteAggregate, string | number>>(
    `SELECT device_id, metric, toUInt32(minute) AS minute, samples, value_sum, value_min, value_max,
            value_first, value_last
     FROM ${table} WHERE ${where}`,
  );
  return rows
    .map((r) =>
      roundedSum({
        device_id: String(r.device_id),
        metric: String(r.metric),
        minute: Number(r.minute),
        samples: Number(r.samples),
        value_sum: Number(r.value_sum),
        value_min: Number(r.value_min),
        value_max: Number(r.value_max),
        value_first: Number(r.value_first),
        value_last: Number(r.value_last),
      }),
    )
    .sort(byMinuteKey);
}

/**
 * The aggregates of the stored messages computed here, by their definition (docs/analysts.md): text
 * values have none.
 */
export function expectedAggregates(stored: Iterable<NormalizedTelemetry>): MinuteAggregate[] {
  const byKey = new Map<string, MinuteAggregate & { firstKey: string; lastKey: string }>();
  const order = (m: NormalizedTelemetry) => `${String(m.ts).padStart(15, '0')} ${m.messageId}`;
  for (const m of stored)
    for (const [metric, raw] of Object.entries(m.metrics)) {
      if (typeof raw === 'string') continue;
      const value = Number(raw);
      const minute = Math.floor(m.ts / 60_000) * 60;
      const key = `${m.deviceId} ${metric} ${minute}`;
      const a = byKey.get(key);
      if (!a) {
        byKey.set(key, {
          device_id: m.deviceId,
          metric,
          minute,
          samples: 1,
          value_sum: value,
          value_min: value,
          value_max: value,
          value_first: value,
          value_last: value,
          firstKey: order(m),
          lastKey: order(m),
        });
        continue;
      }
      a.samples += 1;
      a.value_sum += value;
      a.value_min = Math.min(a.value_min, value);
      a.value_max = Math.max(a.value_max, value);
      if (order(m) < a.firstKey) [a.firstKey, a.value_first] = [order(m), value];
      if (order(m) > a.lastKey) [a.lastKey, a.value_last] = [order(m), value];
    }
  return [...byKey.values()].map(({ firstKey: _f, lastKey: _l, ...a }) => roundedSum(a)).sort(byMinuteKey);
}
