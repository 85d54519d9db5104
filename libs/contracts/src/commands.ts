import { z } from 'zod';
import { RULE_ID_PATTERN } from './alarms';
import { DEVICE_ID_PATTERN } from './telemetry';

/**
 * The command ledger: every linkage command dmp-kernel sends has a lifecycle, and every transition of it
 * is one CommandEvent on the RocketMQ FIFO topic `dmp_command` (ROCKETMQ_TOPIC_COMMAND), message group =
 * device id, key = command id; dmp-data (consumer group `dmp_data_command`) stores it in ClickHouse:
 * `commands` (latest state per command, ReplacingMergeTree(version)) and `command_events` (every
 * transition). docs/rules.md explains the lifecycle, docs/devices.md the reply a device sends.
 *
 * queued: in the kernel's outbox · sent: the broker acknowledged it (PUBACK) · replied: the device
 * answered `ok` · failed: the device answered `error` · expired: no answer within the command's time to
 * live (the broker drops it undelivered then too: MQTT 5 message expiry).
 */
export const commandStates = ['queued', 'sent', 'replied', 'failed', 'expired'] as const;
export type CommandState = (typeof commandStates)[number];

/** Final states: only a resend (a new attempt under the same id) leaves `failed` or `expired`. */
export const finalCommandStates: readonly CommandState[] = ['replied', 'failed', 'expired'];

/**
 * What happened. `queued`, `sent`, `replied`, `failed`, `expired` lead to the state of that name;
 * `resent`: an operator sent it again (state `queued`, same id); `late_reply`: a reply after the
 * command expired (recorded, the state stays `expired`).
 */
export const commandTransitions = [
  'queued',
  'sent',
  'replied',
  'failed',
  'expired',
  'resent',
  'late_reply',
] as const;
export type CommandTransition = (typeof commandTransitions)[number];

export const COMMAND_ID_PATTERN = /^[A-Za-z0-9_.:-]{1,128}$/;
export const COMMAND_NAME_PATTERN = /^[A-Za-z0-9_.:/-]{1,128}$/;

const epochMillisOrZero = z.number().int().nonnegative().max(Number.MAX_SAFE_INTEGER);

/** What a device answered (the reply's `status`, `code`, `message`, `result`), once it answered. */
export const commandReplyRecordSchema = z.object({
  status: z.enum(['ok', 'error']),
  code: z.string().max(128).default(''),
  message: z.string().max(1024).default(''),
  /** The reply's `result`, as JSON text ('' when none). */
  resultJson: z.string().max(16_384).default(''),
  at: epochMillisOrZero,
});
export type CommandReplyRecord = z.infer<typeof commandReplyRecordSchema>;

/** One command and its lifecycle so far (the kernel's ledger record; the latest event carries it whole). */
export const commandRecordSchema = z.object({
  commandId: z.string().regex(COMMAND_ID_PATTERN),
  deviceId: z.string().regex(DEVICE_ID_PATTERN),
  ruleId: z.string().regex(RULE_ID_PATTERN).or(z.literal('')),
  name: z.string().regex(COMMAND_NAME_PATTERN),
  /** The command's parameters as JSON text. */
  paramsJson: z.string(),
  state: z.enum(commandStates),
  /** 1 at `queued`, +1 per transition: the ledger's compare-and-set token and ClickHouse's version. */
  version: z.number().int().positive(),
  ttlMs: z.number().int().positive(),
  queuedAt: epochMillisOrZero,
  sentAt: epochMillisOrZero,
  expiresAt: epochMillisOrZero,
  finishedAt: epochMillisOrZero,
  /** Times the broker took it (a resend sends again). */
  sends: z.number().int().nonnegative(),
  /** Times an operator resent it (bounded by KERNEL_COMMAND_MAX_RESENDS). */
  resends: z.number().int().nonnegative(),
  reply: commandReplyRecordSchema.nullable(),
  /** The trace of the rule evaluation that planned it (the device's reply continues it). */
  traceId: z.string().max(64),
  /** The W3C traceparent of its latest send span: the parent of the reply's span ('' when not traced). */
  traceparent: z.string().max(256).default(''),
});
export type CommandRecord = z.infer<typeof commandRecordSchema>;

/** One transition of one command, with the command's full record after it. */
export const commandEventSchema = z.object({
  eventId: z.string().regex(/^[A-Za-z0-9_.:-]{1,160}$/),
  transition: z.enum(commandTransitions),
  ts: epochMillisOrZero,
  command: commandRecordSchema,
  /** For `late_reply`, and for replies generally: what the device said at this transition. */
  detail: z.string().max(1024).default(''),
});
export type CommandEvent = z.infer<typeof commandEventSchema>;

/**
 * What a device publishes on `devices/{id}/command/reply`: the command's id (MQTT 5: the correlation
 * data of the command, echoed; MQTT 3.1.1: this `commandId` field), `status` `ok` or `error`, and
 * optionally an error `code`, a `message` and a `result`.
 */
export const commandReplySchema = z.object({
  commandId: z.string().regex(COMMAND_ID_PATTERN).optional(),
  status: z.enum(['ok', 'error']),
  code: z.string().max(128).optional(),
  message: z.string().max(1024).optional(),
  result: z.unknown().optional(),
  traceparent: z.string().max(256).optional(),
});
export type CommandReply = z.infer<typeof commandReplySchema>;

export const deviceCommandReplyTopic = (deviceId: string) => `devices/${deviceId}/command/reply`;

/** The device of a reply topic, or undefined when the topic is not `devices/{valid id}/command/reply`. */
export function parseCommandReplyTopic(topic: string): string | undefined {
  const parts = topic.split('/');
  if (parts.length !== 4 || parts[0] !== 'devices' || parts[2] !== 'command' || parts[3] !== 'reply')
    return undefined;
  return DEVICE_ID_PATTERN.test(parts[1]) ? parts[1] : undefined;
}

export const COMMANDS_TABLE = 'commands';
export const COMMAND_EVENTS_TABLE = 'command_events';
