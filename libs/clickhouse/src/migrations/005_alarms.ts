import { ALARM_EVENTS_TABLE, ALARMS_TABLE } from '@dmp/contracts';
import type { Migration } from './migration';

/**
 * Alarms of dmp-kernel's rules (AlarmEvent, RocketMQ `dmp_alarm`), written by dmp-data's alarms feature.
 *
 * - `alarms`: one row per alarm and transition; ReplacingMergeTree(version) keyed by (device_id, rule_id,
 *   alarm_id) keeps the latest lifecycle state of each alarm (read with FINAL). Partitioned by the month
 *   the alarm started (constant for an alarm, so its versions meet in one partition and replace each other).
 * - `alarm_events`: every transition; keyed (device_id, alarm_id, version) so a redelivered event replaces
 *   itself. Partitioned by the month of the transition.
 *
 * Times are epoch milliseconds (UInt64, 0 = not yet) plus DateTime columns for partitions and ranges
 * (18.16 has no DateTime64). `metrics_json` is the device's latest metrics at the transition, as JSON.
 */
export const alarms: Migration = {
  version: 5,
  name: 'alarms',
  statements: () => [
    `CREATE TABLE IF NOT EXISTS ${ALARMS_TABLE}
(
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
    acknowledged_at_ms  UInt64,
    acknowledged_by     String,
    cleared_at_ms       UInt64,
    updated_at_ms       UInt64,
    last_message_id     String,
    metrics_json        String,
    ruleset_version     String,
    version             UInt64,
    inserted_at         DateTime DEFAULT now()
)
ENGINE = ReplacingMergeTree(version)
PARTITION BY toYYYYMM(started_at)
ORDER BY (device_id, rule_id, alarm_id)`,
    `CREATE TABLE IF NOT EXISTS ${ALARM_EVENTS_TABLE}
(
    event_id            String,
    alarm_id            String,
    version             UInt64,
    transition          Enum8('pending' = 1, 'raised' = 2, 'acknowledged' = 3, 'cleared' = 4, 'cancelled' = 5),
    state               Enum8('pending' = 1, 'active' = 2, 'acknowledged' = 3, 'cleared' = 4, 'cancelled' = 5),
    device_id           String,
    rule_id             String,
    severity            Enum8('critical' = 1, 'major' = 2, 'minor' = 3, 'warning' = 4, 'info' = 5),
    tenant_id           String,
    product_id          String,
    site_id             String,
    ts                  DateTime,
    ts_ms               UInt64,
    message_id          String,
    acknowledged_by     String,
    metrics_json        String,
    ruleset_version     String,
    inserted_at         DateTime DEFAULT now()
)
ENGINE = ReplacingMergeTree()
PARTITION BY toYYYYMM(ts)
ORDER BY (device_id, alarm_id, version)`,
  ],
};
