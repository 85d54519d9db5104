import { toAlarmRow, toDateTimeSeconds, type AlarmRow } from '@dmp/clickhouse';
import type { AlarmEvent } from '@dmp/contracts';

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
  return {
    alarm: toAlarmRow(event, now),
    event: {
      event_id: event.eventId,
      alarm_id: event.alarmId,
      version: event.version,
      transition: event.transition,
      state: event.state,
      device_id: event.deviceId,
      rule_id: event.ruleId,
      severity: event.severity,
      tenant_id: event.tenantId,
      product_id: event.productId,
      site_id: event.siteId,
      ts: toDateTimeSeconds(event.ts),
      ts_ms: event.ts,
      message_id: event.messageId,
      acknowledged_by: event.acknowledgedBy,
      metrics_json: JSON.stringify(event.values),
      ruleset_version: event.rulesetVersion,
      inserted_at: toDateTimeSeconds(now),
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
