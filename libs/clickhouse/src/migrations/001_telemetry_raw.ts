import type { Migration } from './migration';

/**
 * One row per message. ReplacingMergeTree keyed (device_id, ts_ms, message_id): a redelivered
 * message (same body, so the same ts) has the same key and collapses into one row on merge (read
 * with FINAL for exact counts). The key prefix serves per-device time-range scans; monthly
 * partitions keep the part count low even for devices replaying old data, and are the retention
 * unit on servers without TTL.
 */
export const telemetryRaw: Migration = {
  version: 1,
  name: 'telemetry_raw',
  statements: () => [
    `CREATE TABLE IF NOT EXISTS telemetry_raw
(
    device_id       String,
    message_id      String,
    kind            Enum8('telemetry' = 1, 'event' = 2, 'snapshot' = 3),
    ts_ms           UInt64,
    ts              DateTime DEFAULT toDateTime(intDiv(ts_ms, 1000)),
    seq             Nullable(UInt64),
    tenant_id       String,
    product_id      String,
    site_id         String,
    metric_names    Array(String),
    metric_values   Array(Float64),
    text_names      Array(String),
    text_values     Array(String),
    received_at_ms  UInt64,
    inserted_at     DateTime DEFAULT now()
)
ENGINE = ReplacingMergeTree()
PARTITION BY toYYYYMM(ts)
ORDER BY (device_id, ts_ms, message_id)
SETTINGS index_granularity = 8192`,
  ],
};
