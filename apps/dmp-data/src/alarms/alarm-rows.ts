import { toDateTimeSeconds } from '@dmp/clickhouse';
import type { AlarmEvent } from '@dmp/contracts';

/** One row of `alarms` (libs/clickhouse migration 005): the alarm's state after an event. Every column is sent (18.16). */
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

/** One row of `alarm_events`: the transition itself. */
export interface AlarmEventRow {
  event_id: string;
  alarm_id: string;
  version: number;
  transition: AlarmEvent['transition'];
  state: AlarmEvent['state'];
  device_id: string;
  rule_id: string;
  severity: AlarmEvent['severity'];
  tenant_id: string;
  product_id: string;
  site_id: string;
  ts: number;
  ts_ms: number;
  message_id: string;
  acknowledged_by: string;
  metrics_json: string;
  ruleset_version: string;
  inserted_at: number;
}

/** One row of `alarm_explanations` (migration 010): what explains the transition. */
export interface AlarmExplanationRow {
  event_id: string;
  alarm_id: string;
  version: number;
  device_id: string;
  rule_id: string;
  ts: number;
  ts_ms: number;
  inputs_json: string;
  rule_text: string;
  trace_id: string;
  inserted_at: number;
}

export function toAlarmRows(
  event: AlarmEvent,
  now = Date.now(),
): { alarm: AlarmRow; event: AlarmEventRow; explanation: AlarmExplanationRow } {
  const metrics = JSON.stringify(event.values);
  const common = {
    device_id: event.deviceId,
    rule_id: event.ruleId,
    severity: event.severity,
    state: event.state,
    tenant_id: event.tenantId,
    product_id: event.productId,
    site_id: event.siteId,
    acknowledged_by: event.acknowledgedBy,
    metrics_json: metrics,
    ruleset_version: event.rulesetVersion,
    inserted_at: toDateTimeSeconds(now),
  };
  return {
    alarm: {
      ...common,
      alarm_id: event.alarmId,
      rule_name: event.ruleName,
      message: event.message,
      started_at: toDateTimeSeconds(event.startedAt),
      started_at_ms: event.startedAt,
      raised_at_ms: event.raisedAt,
      acknowledged_at_ms: event.acknowledgedAt,
      cleared_at_ms: event.clearedAt,
      updated_at_ms: event.ts,
      last_message_id: event.messageId,
      version: event.version,
    },
    event: {
      ...common,
      event_id: event.eventId,
      alarm_id: event.alarmId,
      version: event.version,
      transition: event.transition,
      ts: toDateTimeSeconds(event.ts),
      ts_ms: event.ts,
      message_id: event.messageId,
    },
    explanation: {
      event_id: event.eventId,
      alarm_id: event.alarmId,
      version: event.version,
      device_id: event.deviceId,
      rule_id: event.ruleId,
      ts: toDateTimeSeconds(event.ts),
      ts_ms: event.ts,
      inputs_json: JSON.stringify(event.inputs),
      rule_text: event.ruleText,
      trace_id: event.traceId,
      inserted_at: toDateTimeSeconds(now),
    },
  };
}
