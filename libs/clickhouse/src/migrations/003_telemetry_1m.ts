import type { Migration } from './migration';

/**
 * Per-minute aggregates of numeric metrics, always recomputed from deduplicated raw data
 * (`telemetry_raw FINAL`), never incremented: a recomputation replaces the previous row of the same
 * (device_id, metric, minute) — ReplacingMergeTree(computed_at_ms), the newest snapshot wins — so
 * redeliveries and late data cannot skew them.
 *
 * `telemetry_1m_dirty` persists which (device, minute)s need recomputing: the writer marks them
 * (pending = 1) before the messages are acked, the aggregator marks them done (pending = 0) with
 * the server time its snapshot started at. `ver` = server seconds × 2 + pending: a mark made in
 * the same second as a snapshot wins over it (recomputed once more: never too few times).
 */
export const telemetryMinute: Migration = {
  version: 3,
  name: 'telemetry_1m',
  statements: () => [
    `CREATE TABLE IF NOT EXISTS telemetry_1m
(
    device_id       String,
    metric          String,
    minute          DateTime,
    tenant_id       String,
    product_id      String,
    site_id         String,
    samples         UInt64,
    value_sum       Float64,
    value_min       Float64,
    value_max       Float64,
    value_first     Float64,
    value_last      Float64,
    first_ts_ms     UInt64,
    last_ts_ms      UInt64,
    computed_at_ms  UInt64
)
ENGINE = ReplacingMergeTree(computed_at_ms)
PARTITION BY toYYYYMM(minute)
ORDER BY (device_id, metric, minute)`,
    `CREATE TABLE IF NOT EXISTS telemetry_1m_dirty
(
    device_id  String,
    minute     DateTime,
    pending    UInt8,
    ver        UInt64 DEFAULT toUInt64(now()) * 2 + pending
)
ENGINE = ReplacingMergeTree(ver)
PARTITION BY toYYYYMM(minute)
ORDER BY (minute, device_id)`,
  ],
};
