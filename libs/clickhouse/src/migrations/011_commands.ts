import { COMMAND_EVENTS_TABLE, COMMANDS_TABLE } from '@dmp/contracts';
import type { Migration } from './migration';

/**
 * The command ledger (CommandEvent, RocketMQ `dmp_command`), written by dmp-data's commands feature.
 *
 * - `commands`: one row per command and transition; ReplacingMergeTree(version) keyed by (device_id,
 *   command_id) keeps the latest state of each command (read with FINAL). Partitioned by the month the
 *   command was first queued (constant for a command, so its versions meet in one partition).
 * - `command_events`: every transition; keyed (device_id, command_id, version) so a redelivered event
 *   replaces itself. Partitioned by the month of the transition.
 *
 * Times are epoch milliseconds (UInt64, 0 = not yet) plus DateTime columns for partitions and ranges
 * (18.16 has no DateTime64). Enums are plain Strings: a state added later needs no ALTER on 18.16.
 */
export const commands: Migration = {
  version: 11,
  name: 'commands',
  statements: () => [
    `CREATE TABLE IF NOT EXISTS ${COMMANDS_TABLE}
(
    command_id       String,
    device_id        String,
    rule_id          String,
    name             String,
    params_json      String,
    state            String,
    ttl_ms           UInt64,
    queued_at        DateTime,
    queued_at_ms     UInt64,
    sent_at_ms       UInt64,
    expires_at_ms    UInt64,
    finished_at_ms   UInt64,
    sends            UInt32,
    resends          UInt32,
    reply_status     String,
    reply_code       String,
    reply_message    String,
    reply_json       String,
    replied_at_ms    UInt64,
    trace_id         String,
    updated_at_ms    UInt64,
    version          UInt64,
    inserted_at      DateTime DEFAULT now()
)
ENGINE = ReplacingMergeTree(version)
PARTITION BY toYYYYMM(queued_at)
ORDER BY (device_id, command_id)`,
    `CREATE TABLE IF NOT EXISTS ${COMMAND_EVENTS_TABLE}
(
    event_id         String,
    command_id       String,
    version          UInt64,
    transition       String,
    state            String,
    device_id        String,
    rule_id          String,
    name             String,
    ts               DateTime,
    ts_ms            UInt64,
    detail           String,
    trace_id         String,
    inserted_at      DateTime DEFAULT now()
)
ENGINE = ReplacingMergeTree()
PARTITION BY toYYYYMM(ts)
ORDER BY (device_id, command_id, version)`,
  ],
};
