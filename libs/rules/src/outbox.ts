import type { AlarmEvent, CommandEvent } from '@dmp/contracts';
import type { Redis } from 'ioredis';
import type { PlannedCommand, PlannedWebhook } from './engine';

/**
 * Condition states (alarms) in Redis, shared by every kernel replica and surviving restarts. Keys start
 * with KERNEL_REDIS_NAMESPACE (`dmp` below).
 *
 * - `dmp:alarm:{deviceId}`: hash, field = rule id, value = the Activation (JSON). One hash per device, so
 *   evaluating a message reads all of the device's conditions with one HGETALL.
 * - `dmp:alarm-due`: sorted set of pending conditions by the wall-clock time their timer raises them.
 * - `dmp:alarm-id:{alarmId}`: → `{deviceId}\n{ruleId}`, for acknowledgements by alarm id.
 * - `dmp:outbox` / `dmp:outbox:lease`: the transactional outbox — what a transition obliges the kernel to
 *   do (publish its alarm event, send its raise/clear commands and webhooks), written in the same atomic
 *   step as the transition, removed once done. An entry whose lease expires (the kernel crashed or the
 *   send failed) is claimed and done again by any replica's sweeper: nothing a transition causes is lost;
 *   downstream deduplicates by stable ids (event id, command id, delivery id). Match actions (commands,
 *   webhooks) enter it in the same atomic step that completes their device message (the kernel's
 *   AlarmStore.commit).
 * - `dmp:outbox:attempts`: failed attempts per entry; retries back off, and an entry that fails
 *   KERNEL_OUTBOX_MAX_ATTEMPTS times (or is refused) leaves the outbox as a dead letter (replayable).
 */
export function alarmKeys(ns: string) {
  return {
    alarm: (deviceId: string) => `${ns}:alarm:${deviceId}`,
    due: `${ns}:alarm-due`,
    alarmId: (alarmId: string) => `${ns}:alarm-id:${alarmId}`,
    outbox: `${ns}:outbox`,
    outboxLease: `${ns}:outbox:lease`,
    outboxAttempts: `${ns}:outbox:attempts`,
  };
}

export type OutboxEntry =
  | { id: string; kind: 'event'; event: AlarmEvent }
  | { id: string; kind: 'command'; command: PlannedCommand }
  | { id: string; kind: 'webhook'; webhook: PlannedWebhook }
  /** A transition of the command ledger, for `dmp_command` (written with the transition, CommandLedger). */
  | { id: string; kind: 'command_event'; commandEvent: CommandEvent };

/** Entries for a CompareAndSet (@dmp/redis) that writes them with its change, leased until `leaseUntil`. */
export function outboxOf(
  keys: ReturnType<typeof alarmKeys>,
  entries: readonly OutboxEntry[],
  leaseUntil: number,
) {
  return {
    hash: keys.outbox,
    lease: keys.outboxLease,
    entries: entries.map((entry) => [entry.id, JSON.stringify(entry)] as const),
    leaseUntil,
  };
}

/**
 * Puts entries (back) into an outbox, due at `at`, with no failed attempts: the sweeper of any replica
 * carries them out. Also used by `dmp dead-letters replay`, which has no kernel of its own.
 */
export async function enqueueOutbox(
  redis: Redis,
  keys: ReturnType<typeof alarmKeys>,
  entries: readonly OutboxEntry[],
  at: number,
): Promise<void> {
  if (entries.length === 0) return;
  const multi = redis.multi();
  for (const entry of entries)
    multi
      .hset(keys.outbox, entry.id, JSON.stringify(entry))
      .zadd(keys.outboxLease, at, entry.id)
      .hdel(keys.outboxAttempts, entry.id);
  await multi.exec();
}
