import type { Migration } from './migration';

/**
 * Alarm generations (`dmp rules reprocess --apply`): a time range of history re-run through a chosen rule
 * set version, its alarms written beside the live ones, never over them.
 *
 * - `alarm_generations`: the record of each generation — what was asked (rule set version and files,
 *   devices, range), by whom and why, its state (requested → applied ⇄ reverted) and counts. One row per
 *   state (ReplacingMergeTree(version): read with FINAL). Kept whole on every server (no device column).
 * - `alarm_generation_alarms`: the alarms a generation's rule set would have raised, shaped like
 *   `alarms` plus `generation_id`. Ids are derived from (generation, rule, device, start): a resumed or
 *   repeated run writes the same rows, which the engine collapses. Only rows of an `applied` generation
 *   count (docs/analysts.md "Alarms as reprocessed"); a reverted one's rows stay, as its record says.
 */
export const alarmGenerations: Migration = {
  version: 13,
  name: 'alarm_generations',
  statements: () => [
    `CREATE TABLE IF NOT EXISTS alarm_generations
(
    generation_id       String,
    version             UInt64,
    state               Enum8('requested' = 1, 'applied' = 2, 'reverted' = 3),
    ruleset_version     String,
    rules_json          String,
    device_ids          Array(String),
    from_ms             UInt64,
    to_ms               UInt64,
    data_fingerprint    String,
    reason              String,
    requested_by        String,
    requested_at_ms     UInt64,
    applied_at_ms       UInt64,
    reverted_at_ms      UInt64,
    reverted_by         String,
    messages            UInt64,
    alarms              UInt64
)
ENGINE = ReplacingMergeTree(version)
ORDER BY generation_id`,
    `CREATE TABLE IF NOT EXISTS alarm_generation_alarms
(
    generation_id       String,
    alarm_id            String,
    device_id           String,
    rule_id             String,
    rule_name           String,
    severity            Enum8('critical' = 1, 'major' = 2, 'minor' = 3, 'warning' = 4, 'info' = 5),
    state               Enum8('pending' = 1, 'active' = 2, 'acknowledged' = 3, 'cleared' = 4, 'cancelled' = 5),
    message             String,
    tenant_id           String,
    product_id          String,
    site_id             String,
    started_at          DateTime,
    started_at_ms       UInt64,
    raised_at_ms        UInt64,
    cleared_at_ms       UInt64,
    updated_at_ms       UInt64,
    last_message_id     String,
    metrics_json        String,
    ruleset_version     String,
    version             UInt64
)
ENGINE = ReplacingMergeTree(version)
PARTITION BY toYYYYMM(started_at)
ORDER BY (generation_id, device_id, rule_id, alarm_id)`,
  ],
};
