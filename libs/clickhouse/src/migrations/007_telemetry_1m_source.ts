import type { Migration } from './migration';

/**
 * The aggregator's copy of the recent numeric raw rows, ordered by minute. Recomputing a batch of
 * (device, minute)s from `telemetry_raw` (ordered by device, partitioned by month) read nearly every
 * granule of the month: the devices of one minute are spread over all of them. Here they lie
 * together, so a recomputation reads only its minutes. A materialized view fills it from every
 * insert into `telemetry_raw`; same key as raw (the minute follows from `ts_ms`), so FINAL collapses
 * redeliveries the same way. Daily partitions: the aggregator reads it for the minutes of the last
 * two days and drops older days; older minutes are recomputed from `telemetry_raw`. The migration
 * copies the last three days of raw rows (run twice, the copies collapse under FINAL): the days
 * the aggregator keeps, its SOURCE_DAYS + 1, written out because a migration must not change later.
 */
export const telemetryMinuteSource: Migration = {
  version: 7,
  name: 'telemetry_1m_source',
  statements: () => [
    `CREATE TABLE IF NOT EXISTS telemetry_1m_source
(
    minute         DateTime,
    device_id      String,
    ts_ms          UInt64,
    message_id     String,
    tenant_id      String,
    product_id     String,
    site_id        String,
    metric_names   Array(String),
    metric_values  Array(Float64)
)
ENGINE = ReplacingMergeTree()
PARTITION BY toYYYYMMDD(minute)
ORDER BY (minute, device_id, ts_ms, message_id)`,
    `CREATE MATERIALIZED VIEW IF NOT EXISTS telemetry_1m_source_mv TO telemetry_1m_source AS
SELECT toStartOfMinute(ts) AS minute, device_id, ts_ms, message_id, tenant_id, product_id, site_id,
       metric_names, metric_values
FROM telemetry_raw
WHERE notEmpty(metric_names)`,
    `INSERT INTO telemetry_1m_source
  (minute, device_id, ts_ms, message_id, tenant_id, product_id, site_id, metric_names, metric_values)
SELECT toStartOfMinute(ts), device_id, ts_ms, message_id, tenant_id, product_id, site_id,
       metric_names, metric_values
FROM telemetry_raw
WHERE ts >= now() - 3 * 86400 AND notEmpty(metric_names)`,
  ],
};
