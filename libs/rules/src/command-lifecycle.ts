import {
  finalCommandStates,
  type CommandEvent,
  type CommandRecord,
  type CommandTransition,
} from '@dmp/contracts';
import type { PlannedCommand } from './engine';

/**
 * The lifecycle of a linkage command, as a pure function of the command's record and what happened
 * (the kernel's CommandLedger stores the record in Redis with compare-and-set and publishes the event):
 *
 *   queued ──sent──▶ sent ──reply ok──▶ replied
 *     │                │  ──reply error──▶ failed
 *     └────────────────┴──time to live over──▶ expired
 *   failed | expired ──resend (≤ maxResends)──▶ queued (same id)
 *
 * A reply may overtake the `sent` record (the device answers before the kernel wrote down the PUBACK):
 * a reply to a queued command counts. Replies to a command already answered are duplicates (ignored);
 * a reply after expiry is recorded as `late_reply` but leaves the command expired.
 */
export type CommandFact =
  | { kind: 'queue'; command: PlannedCommand; ttlMs: number; traceId: string; now: number }
  | { kind: 'sent'; now: number; traceparent?: string }
  | {
      kind: 'reply';
      status: 'ok' | 'error';
      code?: string;
      message?: string;
      result?: unknown;
      now: number;
    }
  | { kind: 'expire'; now: number }
  | { kind: 'resend'; maxResends: number; now: number };

export type CommandDecision =
  /** Write `record` (compare-and-set on the previous version) and publish `event`. */
  | { kind: 'apply'; record: CommandRecord; event: CommandEvent }
  /** Nothing to write: the fact changes nothing (a repeat, or too early). */
  | { kind: 'ignore'; reason: 'duplicate' | 'not_due' | 'final' | 'unknown' }
  /** The fact is not allowed (an operator's resend): `reason` says why. */
  | { kind: 'refuse'; reason: string };

const MAX_TEXT = 1024;
const MAX_RESULT = 16_384;

export const isFinalCommandState = (state: CommandRecord['state']) => finalCommandStates.includes(state);

export function decideCommand(record: CommandRecord | undefined, fact: CommandFact): CommandDecision {
  if (fact.kind === 'queue') {
    if (record) return { kind: 'ignore', reason: 'duplicate' };
    const { command, ttlMs, now } = fact;
    return applied(
      {
        commandId: command.commandId,
        deviceId: command.deviceId,
        ruleId: command.ruleId,
        name: command.name,
        paramsJson: JSON.stringify(command.params ?? {}),
        state: 'queued',
        version: 1,
        ttlMs,
        queuedAt: now,
        sentAt: 0,
        expiresAt: now + ttlMs,
        finishedAt: 0,
        sends: 0,
        resends: 0,
        reply: null,
        traceId: fact.traceId,
        traceparent: '',
      },
      'queued',
      now,
    );
  }
  if (!record)
    return fact.kind === 'resend'
      ? { kind: 'refuse', reason: 'no such command' }
      : { kind: 'ignore', reason: 'unknown' };

  switch (fact.kind) {
    case 'sent':
      // The broker took it. Recorded once per attempt; a reply may already have finished it.
      if (record.state !== 'queued') return { kind: 'ignore', reason: 'final' };
      return applied(
        { ...record, state: 'sent', sentAt: fact.now, sends: record.sends + 1 },
        'sent',
        fact.now,
      );

    case 'reply': {
      const reply = {
        status: fact.status,
        code: clip(fact.code ?? '', 128),
        message: clip(fact.message ?? '', MAX_TEXT),
        resultJson: fact.result === undefined ? '' : clip(JSON.stringify(fact.result), MAX_RESULT),
        at: fact.now,
      };
      const detail = clip([fact.status, reply.code, reply.message].filter(Boolean).join(': '), MAX_TEXT);
      if (record.state === 'replied' || record.state === 'failed')
        return { kind: 'ignore', reason: 'duplicate' };
      if (record.state === 'expired')
        // Recorded (an analyst sees the device did answer, late); the command stays expired.
        return applied({ ...record }, 'late_reply', fact.now, detail);
      const state = fact.status === 'ok' ? 'replied' : 'failed';
      // A reply to a queued command overtook its `sent` record (ignored when it comes): it was sent.
      const sent = record.state === 'queued' ? { sentAt: fact.now, sends: record.sends + 1 } : {};
      return applied({ ...record, ...sent, state, reply, finishedAt: fact.now }, state, fact.now, detail);
    }

    case 'expire':
      if (isFinalCommandState(record.state)) return { kind: 'ignore', reason: 'final' };
      if (fact.now < record.expiresAt) return { kind: 'ignore', reason: 'not_due' };
      return applied({ ...record, state: 'expired', finishedAt: fact.now }, 'expired', fact.now);

    case 'resend':
      if (record.state === 'replied') return { kind: 'refuse', reason: 'the device answered it ok' };
      if (!isFinalCommandState(record.state))
        return {
          kind: 'refuse',
          reason: `it is still ${record.state} (expires ${new Date(record.expiresAt).toISOString()})`,
        };
      if (record.resends >= fact.maxResends)
        return { kind: 'refuse', reason: `it was resent ${record.resends} time(s), the limit` };
      return applied(
        {
          ...record,
          state: 'queued',
          resends: record.resends + 1,
          expiresAt: fact.now + record.ttlMs,
          finishedAt: 0,
          reply: null,
        },
        'resent',
        fact.now,
      );
  }
}

/** How long (whole seconds, ≥ 1) a command sent now may wait at the broker: its MQTT 5 message expiry. */
export function messageExpirySeconds(record: Pick<CommandRecord, 'expiresAt'>, now: number): number {
  return Math.max(1, Math.ceil((record.expiresAt - now) / 1000));
}

function applied(
  next: CommandRecord,
  transition: CommandTransition,
  now: number,
  detail = '',
): CommandDecision {
  const record = transition === 'queued' ? next : { ...next, version: next.version + 1 };
  return {
    kind: 'apply',
    record,
    event: {
      eventId: `${record.commandId}:${record.version}`,
      transition,
      ts: now,
      command: record,
      detail,
    },
  };
}

const clip = (text: string, max: number) => (text.length > max ? text.slice(0, max) : text);
