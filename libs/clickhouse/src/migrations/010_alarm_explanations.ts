import { ALARM_EXPLANATIONS_TABLE } from '@dmp/contracts';
import type { Migration } from './migration';

/**
 * What explains each alarm event (`dmp explain alarm`): the values the rule's conditions read at the
 * transition (`inputs_json`, by path: `state.latest.temperature`…), the rule's YAML text in the rule set
 * version that decided it, and the trace id to open in Jaeger. A table of its own, keyed like
 * `alarm_events` (a redelivered event replaces itself), rather than new columns of `alarm_events`:
 * 18.16 has no `ADD COLUMN IF NOT EXISTS`, and every migration statement must be idempotent.
 */
export const alarmExplanations: Migration = {
  version: 10,
  name: 'alarm_explanations',
  statements: () => [
    `CREATE TABLE IF NOT EXISTS ${ALARM_EXPLANATIONS_TABLE}
(
    event_id      String,
    alarm_id      String,
    version       UInt64,
    device_id     String,
    rule_id       String,
    ts            DateTime,
    ts_ms         UInt64,
    inputs_json   String,
    rule_text     String,
    trace_id      String,
    inserted_at   DateTime DEFAULT now()
)
ENGINE = ReplacingMergeTree()
PARTITION BY toYYYYMM(ts)
ORDER BY (device_id, alarm_id, version)`,
  ],
};
