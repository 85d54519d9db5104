import { z } from 'zod';
import { DEVICE_ID_PATTERN, metricValueSchema } from './telemetry';

/**
 * Alarms raised by dmp-kernel's rules. Every lifecycle transition of an alarm is one AlarmEvent on the
 * RocketMQ FIFO topic `dmp_alarm` (ROCKETMQ_TOPIC_ALARM), message group = device id, key = alarm id;
 * dmp-data (consumer group `dmp_data_alarm`) stores it in ClickHouse: `alarms` (latest state per alarm,
 * ReplacingMergeTree(version)) and `alarm_events` (every transition). docs/rules.md explains the lifecycle.
 */
export const alarmSeverities = ['critical', 'major', 'minor', 'warning', 'info'] as const;
export type AlarmSeverity = (typeof alarmSeverities)[number];

/**
 * pending: the condition holds, its `for` duration has not elapsed yet · active: raised ·
 * acknowledged: raised and acknowledged by an operator (still active) · cleared: the condition ended ·
 * cancelled: the condition ended before its `for` duration elapsed (never raised).
 */
export const alarmStates = ['pending', 'active', 'acknowledged', 'cleared', 'cancelled'] as const;
export type AlarmState = (typeof alarmStates)[number];

/** What happened; the state an alarm is in after it follows from it. */
export const alarmTransitions = ['pending', 'raised', 'acknowledged', 'cleared', 'cancelled'] as const;
export type AlarmTransition = (typeof alarmTransitions)[number];

export const stateAfter: Record<AlarmTransition, AlarmState> = {
  pending: 'pending',
  raised: 'active',
  acknowledged: 'acknowledged',
  cleared: 'cleared',
  cancelled: 'cancelled',
};

export const RULE_ID_PATTERN = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$/;
export const ALARM_ID_PATTERN = /^[A-Za-z0-9_.:-]{1,128}$/;

/** Epoch milliseconds, 0 meaning "not (yet)". */
const epochMillisOrZero = z.number().int().nonnegative().max(Number.MAX_SAFE_INTEGER);

/** One transition of one alarm, with the alarm's full state after it (so the latest event is the alarm). */
export const alarmEventSchema = z.object({
  /** `{alarmId}:{version}`: a redelivered or republished event has the same id. */
  eventId: z.string().min(1).max(200),
  alarmId: z.string().regex(ALARM_ID_PATTERN),
  /** 1 for the first transition of the alarm, +1 per transition: the latest version is the alarm's state. */
  version: z.number().int().positive(),
  transition: z.enum(alarmTransitions),
  state: z.enum(alarmStates),
  deviceId: z.string().regex(DEVICE_ID_PATTERN),
  ruleId: z.string().regex(RULE_ID_PATTERN),
  ruleName: z.string().max(256),
  severity: z.enum(alarmSeverities),
  /** The rule's rendered alarm message. */
  message: z.string().max(2048),
  tenantId: z.string(),
  productId: z.string(),
  siteId: z.string(),
  /** When the transition happened (message time; the acknowledgement's wall-clock time). */
  ts: z.number().int().positive().max(Number.MAX_SAFE_INTEGER),
  /** When the condition started to hold (the pending time). */
  startedAt: epochMillisOrZero,
  raisedAt: epochMillisOrZero,
  acknowledgedAt: epochMillisOrZero,
  acknowledgedBy: z.string().max(256),
  clearedAt: epochMillisOrZero,
  /** The telemetry message that caused the transition; '' for timer raises and acknowledgements. */
  messageId: z.string().max(128),
  /** The device's latest known metric values at the transition. */
  values: z.record(z.string(), metricValueSchema),
  /** The rule set version that evaluated it. */
  rulesetVersion: z.string().max(64),
  /**
   * What the rule's conditions (`when`, `clear`) read at this transition, by path
   * (`state.latest.temperature`, `msg.metrics.door_open`, `device.tags.zone`): null when absent.
   * Empty for acknowledgements and for conditions of rules no longer in the set.
   */
  inputs: z.record(z.string(), z.unknown()).default({}),
  /** The rule's YAML text in that rule set version ('' when the rule is no longer in it). */
  ruleText: z.string().max(8192).default(''),
  /** The trace (W3C trace id, 32 hex digits) in which the transition was decided: the message's, the timer's or the acknowledgement's; '' if none. */
  traceId: z.string().max(32).default(''),
});
export type AlarmEvent = z.infer<typeof alarmEventSchema>;

/** ClickHouse tables of dmp-data's alarms feature (libs/clickhouse migration 005). */
export const ALARMS_TABLE = 'alarms';
export const ALARM_EVENTS_TABLE = 'alarm_events';
/** What explains each alarm event: the inputs' values, the rule text, the trace id (libs/clickhouse migration 010). */
export const ALARM_EXPLANATIONS_TABLE = 'alarm_explanations';
