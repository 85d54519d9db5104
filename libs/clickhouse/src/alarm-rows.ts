import type { AlarmEvent } from '@dmp/contracts';
import { toDateTimeSeconds } from './telemetry-rows';

/**
 * One row of `alarms` (migration 005): the alarm's state after an event. Every column is sent (18.16).
 * dmp-data writes it for live alarms; `alarm_generation_alarms` (migration 013) has the same columns
 * but those of {@link LiveAlarmColumns}, plus its generation's.
 */
export interface AlarmRow {
  alarm_id: string;
  device_id: string;
  rule_id: string;
  rule_name: string;
  severity: AlarmEvent['severity'];
  state: AlarmEvent['state'];
  message: string;
  tenant_id: string;
  product_id: string;
  site_id: string;
  started_at: number;
  started_at_ms: number;
  raised_at_ms: number;
  acknowledged_at_ms: number;
  acknowledged_by: string;
  cleared_at_ms: number;
  updated_at_ms: number;
  last_message_id: string;
  metrics_json: string;
  ruleset_version: string;
  version: number;
  inserted_at: number;
}

/** Columns only live alarms have: a replayed alarm is acknowledged by no one, and not stamped. */
export type LiveAlarmColumns = 'acknowledged_at_ms' | 'acknowledged_by' | 'inserted_at';

/**
 * An `alarms` row as a SELECT returns it (JSONEachRow): 64-bit integers and DateTime as strings.
 * Queries pick the columns they read from it.
 */
export type AlarmRowAsRead = { [C in keyof AlarmRow]: AlarmRow[C] extends number ? string : AlarmRow[C] };

/** An alarm's state after `event`, as an `alarms` row, stamped `now` (ms). */
export function toAlarmRow(event: AlarmEvent, now = Date.now()): AlarmRow {
  return {
    alarm_id: event.alarmId,
    device_id: event.deviceId,
    rule_id: event.ruleId,
    rule_name: event.ruleName,
    severity: event.severity,
    state: event.state,
    message: event.message,
    tenant_id: event.tenantId,
    product_id: event.productId,
    site_id: event.siteId,
    started_at: toDateTimeSeconds(event.startedAt),
    started_at_ms: event.startedAt,
    raised_at_ms: event.raisedAt,
    acknowledged_at_ms: event.acknowledgedAt,
    acknowledged_by: event.acknowledgedBy,
    cleared_at_ms: event.clearedAt,
    updated_at_ms: event.ts,
    last_message_id: event.messageId,
    metrics_json: JSON.stringify(event.values),
    ruleset_version: event.rulesetVersion,
    version: event.version,
    inserted_at: toDateTimeSeconds(now),
  };
}
