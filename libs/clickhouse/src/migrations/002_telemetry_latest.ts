import type { Migration } from './migration';

/**
 * Latest value per device and metric: ReplacingMergeTree(version) keyed (device_id, metric).
 * `version` = ts_ms × 1024 + cityHash64(message_id) % 1024: the newest device timestamp wins, and
 * two messages with the same millisecond are ordered by a hash of their ids, so the winner never
 * depends on the order inserts (or redeliveries) arrived in. MATERIALIZED: ClickHouse computes it.
 */
export const telemetryLatest: Migration = {
  version: 2,
  name: 'telemetry_latest',
  statements: () => [
    `CREATE TABLE IF NOT EXISTS telemetry_latest
(
    device_id    String,
    metric       String,
    value_type   Enum8('number' = 1, 'bool' = 2, 'text' = 3),
    value        Float64,
    text_value   String,
    ts_ms        UInt64,
    ts           DateTime ALIAS toDateTime(intDiv(ts_ms, 1000)),
    message_id   String,
    kind         Enum8('telemetry' = 1, 'event' = 2, 'snapshot' = 3),
    tenant_id    String,
    product_id   String,
    site_id      String,
    inserted_at  DateTime DEFAULT now(),
    version      UInt64 MATERIALIZED ts_ms * 1024 + cityHash64(message_id) % 1024
)
ENGINE = ReplacingMergeTree(version)
ORDER BY (device_id, metric)
SETTINGS index_granularity = 8192`,
  ],
};
