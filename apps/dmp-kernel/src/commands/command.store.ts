import { commandRecordSchema, type CommandRecord } from '@dmp/contracts';
import { CompareAndSet, REDIS_CLIENT } from '@dmp/redis';
import { alarmKeys, outboxOf, type OutboxEntry } from '@dmp/rules';
import { Inject, Injectable } from '@nestjs/common';
import type { Redis } from 'ioredis';
import { KERNEL_CONFIG, type KernelConfig } from '../config';

/**
 * The command ledger in Redis, shared by every kernel replica. Keys start with KERNEL_REDIS_NAMESPACE:
 * - `dmp:command:{commandId}`: the command's record (JSON), kept KERNEL_COMMAND_RETENTION_MS;
 * - `dmp:commands:{deviceId}`: sorted set of the device's command ids by the time they were queued;
 * - `dmp:command-due`: sorted set of unfinished commands by the time they expire (the sweeper's).
 *
 * Every transition is a compare-and-set on the record's version (CompareAndSet), written in the same
 * atomic step as its outbox entries (the event for `dmp_command`; a resend's command): a replica that
 * read an older record (a reply and the sweeper at once, two replicas) fails and re-reads — never two
 * transitions from one state, never a transition without its event.
 */
// KEYS: record, device index, due set. A: record JSON, command id, expiry ('' when finished), queued
// at, retention (ms).
const APPLY = {
  read: `
local current = redis.call('GET', KEYS[1])
if not current then return '0' end
return string.format('%d', cjson.decode(current).version)`,
  write: `
redis.call('SET', KEYS[1], A[1], 'PX', A[5])
redis.call('ZADD', KEYS[2], A[4], A[2])
redis.call('PEXPIRE', KEYS[2], A[5])
if A[3] == '' then redis.call('ZREM', KEYS[3], A[2]) else redis.call('ZADD', KEYS[3], A[3], A[2]) end`,
};

/** At most this many command ids are kept per device in its index (the oldest are dropped). */
const PER_DEVICE = 1_000;

@Injectable()
export class CommandStore {
  private readonly transition: CompareAndSet;
  private readonly ns: string;
  private readonly outbox: ReturnType<typeof alarmKeys>;
  private readonly retentionMs: number;

  constructor(
    @Inject(REDIS_CLIENT) private readonly redis: Redis,
    @Inject(KERNEL_CONFIG) config: KernelConfig,
  ) {
    this.ns = config.rules.redisNamespace;
    this.outbox = alarmKeys(this.ns);
    this.retentionMs = config.rules.commands.retentionMs;
    this.transition = new CompareAndSet(redis, 'dmpCommandApply', APPLY);
  }

  private key = (commandId: string) => `${this.ns}:command:${commandId}`;
  private deviceKey = (deviceId: string) => `${this.ns}:commands:${deviceId}`;
  private get dueKey() {
    return `${this.ns}:command-due`;
  }

  async get(commandId: string): Promise<CommandRecord | undefined> {
    const json = await this.redis.get(this.key(commandId));
    return json ? commandRecordSchema.parse(JSON.parse(json)) : undefined;
  }

  /**
   * Writes `record` if the stored one still has `expectedVersion` (0: none yet), with its outbox
   * entries leased until `leaseUntil` (the caller carries them out now). False on a conflict.
   */
  async apply(
    record: CommandRecord,
    expectedVersion: number,
    outbox: readonly OutboxEntry[],
    leaseUntil: number,
  ): Promise<boolean> {
    const finished = record.state === 'replied' || record.state === 'failed' || record.state === 'expired';
    const ok = await this.transition.apply(
      [this.key(record.commandId), this.deviceKey(record.deviceId), this.dueKey],
      String(expectedVersion),
      [
        JSON.stringify(record),
        record.commandId,
        finished ? '' : record.expiresAt,
        record.queuedAt,
        this.retentionMs,
      ],
      outboxOf(this.outbox, outbox, leaseUntil),
    );
    if (ok && expectedVersion === 0)
      await this.redis.zremrangebyrank(this.deviceKey(record.deviceId), 0, -PER_DEVICE - 1);
    return ok;
  }

  /** Unfinished commands whose time to live is over. */
  due(now: number, limit: number): Promise<string[]> {
    return this.redis.zrangebyscore(this.dueKey, '-inf', now, 'LIMIT', 0, limit);
  }

  /** Drops a due entry whose record is gone (retention) or finished. */
  async forgetDue(commandId: string): Promise<void> {
    await this.redis.zrem(this.dueKey, commandId);
  }

  /** The device's latest commands, newest first. */
  async listDevice(deviceId: string, limit: number): Promise<CommandRecord[]> {
    const ids = await this.redis.zrevrange(this.deviceKey(deviceId), 0, limit - 1);
    if (ids.length === 0) return [];
    const values = await this.redis.mget(ids.map((id) => this.key(id)));
    return values.flatMap((json) => (json ? [commandRecordSchema.parse(JSON.parse(json))] : []));
  }
}
