import type { Migration } from './migration';

/**
 * The record of every correction and deletion of stored telemetry (`dmp telemetry correct | delete`):
 * what was asked, by whom and why, and what it changed. One row per correction and state
 * (ReplacingMergeTree(version): read with FINAL for the latest state). `latest_pairs` (JSON) holds the
 * `telemetry_latest` rows the correction recomputes, recorded before anything changes, so that a
 * correction interrupted at any step is finished by running it again. Kept whole on every server of a
 * cluster (no device column): a correction spans devices.
 */
export const telemetryCorrections: Migration = {
  version: 12,
  name: 'telemetry_corrections',
  statements: () => [
    `CREATE TABLE IF NOT EXISTS telemetry_corrections
(
    correction_id       String,
    version             UInt64,
    state               Enum8('requested' = 1, 'applied' = 2, 'done' = 3),
    action              String,
    metric              String,
    operand             Float64,
    device_ids          Array(String),
    from_ms             UInt64,
    to_ms               UInt64,
    reason              String,
    requested_by        String,
    requested_at_ms     UInt64,
    rows_affected       UInt64,
    minutes_recomputed  UInt64,
    latest_recomputed   UInt64,
    latest_pairs        String
)
ENGINE = ReplacingMergeTree(version)
ORDER BY correction_id`,
  ],
};
