import { toDateTimeSeconds } from '@dmp/clickhouse';
import type { CommandEvent } from '@dmp/contracts';

/** One row of `commands` (libs/clickhouse migration 011): the command after an event. Every column is sent (18.16). */
export interface CommandRow {
  command_id: string;
  device_id: string;
  rule_id: string;
  name: string;
  params_json: string;
  state: string;
  ttl_ms: number;
  queued_at: number;
  queued_at_ms: number;
  sent_at_ms: number;
  expires_at_ms: number;
  finished_at_ms: number;
  sends: number;
  resends: number;
  reply_status: string;
  reply_code: string;
  reply_message: string;
  reply_json: string;
  replied_at_ms: number;
  trace_id: string;
  updated_at_ms: number;
  version: number;
  inserted_at: number;
}

/** One row of `command_events`: the transition itself. */
export interface CommandEventRow {
  event_id: string;
  command_id: string;
  version: number;
  transition: string;
  state: string;
  device_id: string;
  rule_id: string;
  name: string;
  ts: number;
  ts_ms: number;
  detail: string;
  trace_id: string;
  inserted_at: number;
}

export function toCommandRows(
  event: CommandEvent,
  now = Date.now(),
): { command: CommandRow; event: CommandEventRow } {
  const c = event.command;
  return {
    command: {
      command_id: c.commandId,
      device_id: c.deviceId,
      rule_id: c.ruleId,
      name: c.name,
      params_json: c.paramsJson,
      state: c.state,
      ttl_ms: c.ttlMs,
      queued_at: toDateTimeSeconds(c.queuedAt),
      queued_at_ms: c.queuedAt,
      sent_at_ms: c.sentAt,
      expires_at_ms: c.expiresAt,
      finished_at_ms: c.finishedAt,
      sends: c.sends,
      resends: c.resends,
      reply_status: c.reply?.status ?? '',
      reply_code: c.reply?.code ?? '',
      reply_message: c.reply?.message ?? '',
      reply_json: c.reply?.resultJson ?? '',
      replied_at_ms: c.reply?.at ?? 0,
      trace_id: c.traceId,
      updated_at_ms: event.ts,
      version: c.version,
      inserted_at: toDateTimeSeconds(now),
    },
    event: {
      event_id: event.eventId,
      command_id: c.commandId,
      version: c.version,
      transition: event.transition,
      state: c.state,
      device_id: c.deviceId,
      rule_id: c.ruleId,
      name: c.name,
      ts: toDateTimeSeconds(event.ts),
      ts_ms: event.ts,
      detail: event.detail,
      trace_id: c.traceId,
      inserted_at: toDateTimeSeconds(now),
    },
  };
}
