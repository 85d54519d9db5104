import { CompareAndSet, defineScript, REDIS_CLIENT, type ScriptArg } from '@dmp/redis';
import {
  alarmKeys,
  enqueueOutbox,
  outboxOf,
  type Activation,
  type OutboxEntry,
  type Transition,
} from '@dmp/rules';
import { Inject, Injectable } from '@nestjs/common';
import type { Redis } from 'ioredis';
import { KERNEL_CONFIG, type KernelConfig } from '../config';

/**
 * Condition states (alarms) and the transactional outbox in Redis, laid out as `alarmKeys` (@dmp/rules)
 * says.
 *
 * Every transition is a compare-and-set on the activation's `{id}:{version}` (CompareAndSet, with its
 * outbox entries): a replica that read an older state (a concurrent acknowledgement, timer, or other
 * replica) fails and re-reads.
 */
// KEYS: alarm hash, due set, alarm-id key. A: rule id, activation JSON ('' to end it), due member, due
// time ('' when not pending), alarm-id operation ('set' | 'del' | '-').
const TRANSITION = {
  read: `
local current = redis.call('HGET', KEYS[1], A[1])
if not current then return '' end
local decoded = cjson.decode(current)
return decoded.id .. ':' .. string.format('%d', decoded.version)`,
  write: `
if A[2] == '' then redis.call('HDEL', KEYS[1], A[1]) else redis.call('HSET', KEYS[1], A[1], A[2]) end
if A[4] == '' then redis.call('ZREM', KEYS[2], A[3]) else redis.call('ZADD', KEYS[2], A[4], A[3]) end
if A[5] == 'set' then redis.call('SET', KEYS[3], A[3]) elseif A[5] == 'del' then redis.call('DEL', KEYS[3]) end`,
};

/** Claims up to ARGV[2] entries whose lease ended before ARGV[1], extending it to ARGV[3]. */
const CLAIM = `
local ids = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
local out = {}
for _, id in ipairs(ids) do
  local entry = redis.call('HGET', KEYS[1], id)
  if entry then
    redis.call('ZADD', KEYS[2], ARGV[3], id)
    table.insert(out, entry)
  else
    redis.call('ZREM', KEYS[2], id)
  end
end
return out
`;

const dueMember = (deviceId: string, ruleId: string) => `${deviceId}\n${ruleId}`;

@Injectable()
export class AlarmStore {
  private readonly keys: ReturnType<typeof alarmKeys>;
  private readonly transition: CompareAndSet;
  private readonly claim: (...args: ScriptArg[]) => Promise<string[]>;

  constructor(
    @Inject(REDIS_CLIENT) private readonly redis: Redis,
    @Inject(KERNEL_CONFIG) config: KernelConfig,
  ) {
    this.keys = alarmKeys(config.rules.redisNamespace);
    this.transition = new CompareAndSet(redis, 'dmpAlarmTransition', TRANSITION);
    this.claim = defineScript(redis, 'dmpOutboxClaim', CLAIM, 2);
  }

  /** The device's condition states by rule id. */
  async load(deviceId: string): Promise<Map<string, Activation>> {
    const hash = await this.redis.hgetall(this.keys.alarm(deviceId));
    const result = new Map<string, Activation>();
    for (const [ruleId, json] of Object.entries(hash)) result.set(ruleId, JSON.parse(json) as Activation);
    return result;
  }

  async get(deviceId: string, ruleId: string): Promise<Activation | undefined> {
    const json = await this.redis.hget(this.keys.alarm(deviceId), ruleId);
    return json ? (JSON.parse(json) as Activation) : undefined;
  }

  /** Where an alarm id lives, if the alarm is still open (pending, active or acknowledged). */
  async locate(alarmId: string): Promise<{ deviceId: string; ruleId: string } | undefined> {
    const member = await this.redis.get(this.keys.alarmId(alarmId));
    if (!member) return undefined;
    const [deviceId, ruleId] = member.split('\n');
    return deviceId && ruleId ? { deviceId, ruleId } : undefined;
  }

  /**
   * Applies a transition if the activation is still the one it was computed from, together with its
   * outbox entries (leased until `leaseUntil`: the caller does them now). False on a conflict.
   */
  async apply(transition: Transition, outbox: readonly OutboxEntry[], leaseUntil: number): Promise<boolean> {
    const { deviceId, ruleId, before, after } = transition;
    const activation = after ?? before;
    const expected = before ? `${before.id}:${before.version}` : '';
    const alarmIdOp = !activation?.alarm ? '-' : after ? (before ? '-' : 'set') : 'del';
    return this.transition.apply(
      [this.keys.alarm(deviceId), this.keys.due, this.keys.alarmId(activation?.id ?? 'none')],
      expected,
      [
        ruleId,
        after ? JSON.stringify(after) : '',
        dueMember(deviceId, ruleId),
        after?.state === 'pending' ? after.dueAt : '',
        alarmIdOp,
      ],
      outboxOf(this.keys, outbox, leaseUntil),
    );
  }

  /** Pending conditions whose timer is due. */
  async due(now: number, limit: number): Promise<{ deviceId: string; ruleId: string }[]> {
    const members = await this.redis.zrangebyscore(this.keys.due, '-inf', now, 'LIMIT', 0, limit);
    return members.flatMap((member) => {
      const [deviceId, ruleId] = member.split('\n');
      return deviceId && ruleId ? [{ deviceId, ruleId }] : [];
    });
  }

  /** Drops a due entry whose activation is gone or no longer pending (a stale index entry). */
  async forgetDue(deviceId: string, ruleId: string): Promise<void> {
    await this.redis.zrem(this.keys.due, dueMember(deviceId, ruleId));
  }

  /** Outbox entries whose lease ended (their owner crashed or failed), claimed until `leaseUntil`. */
  async claimExpired(now: number, leaseUntil: number, limit: number): Promise<OutboxEntry[]> {
    const entries = await this.claim(this.keys.outbox, this.keys.outboxLease, now, limit, leaseUntil);
    return entries.map((json) => JSON.parse(json) as OutboxEntry);
  }

  /** The entry is done (or given up): remove it. */
  async complete(id: string): Promise<void> {
    await this.redis
      .multi()
      .hdel(this.keys.outbox, id)
      .zrem(this.keys.outboxLease, id)
      .hdel(this.keys.outboxAttempts, id)
      .exec();
  }

  /** Counts a failed attempt of the entry; returns the failed attempts so far. */
  async countFailure(id: string): Promise<number> {
    return this.redis.hincrby(this.keys.outboxAttempts, id, 1);
  }

  /** Not done: try it again from `retryAt` (its lease ends then). */
  async release(id: string, retryAt: number): Promise<void> {
    await this.redis.zadd(this.keys.outboxLease, 'XX', retryAt, id);
  }

  /** Puts entries (back) into the outbox, due at `at`, attempts counted from zero (a replay). */
  async enqueue(entries: readonly OutboxEntry[], at: number): Promise<void> {
    await enqueueOutbox(this.redis, this.keys, entries, at);
  }

  /** Entries not done yet (for /health and tests). */
  outboxSize(): Promise<number> {
    return this.redis.hlen(this.keys.outbox);
  }
}
