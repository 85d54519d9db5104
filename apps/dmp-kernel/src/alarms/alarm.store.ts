import { defineScript, REDIS_CLIENT, type ScriptArg } from '@dmp/redis';
import { alarmKeys, enqueueOutbox, type Activation, type OutboxEntry, type Transition } from '@dmp/rules';
import { Inject, Injectable } from '@nestjs/common';
import type { Redis } from 'ioredis';
import { KERNEL_CONFIG, type KernelConfig } from '../config';
import { COMPLETE_LUA, type Completion } from '../state/device-state.store';

/**
 * Condition states (alarms) and the transactional outbox in Redis, laid out as `alarmKeys` (@dmp/rules)
 * says.
 *
 * Every change of a device's conditions is one atomic commit (COMMIT): each rule's transitions are a
 * compare-and-set on its activation's `{id}:{version}` — a replica that read an older state (a concurrent
 * acknowledgement, timer, or other replica) loses and re-reads — written with their outbox entries and,
 * for a message's evaluation, with the message's completion (its metrics in the device state, its id as
 * completed, the outbox entries of its match actions). All or nothing: a transition is never written
 * without the state that caused it, so no later evaluation sees a condition moved on values it has not.
 */
// KEYS: alarm hash, due set, outbox hash, outbox lease set, one alarm-id key per transition, then the
// state hash when a message completes. ARGV[1]: JSON { transitions: [{ rule, expected, activation ('' to
// end it), member (of the due set), dueAt ('' when not pending), idOp ('set' | 'del' | '-') }], outbox:
// [[id, entry JSON]], leaseUntil, message?: Completion }. Returns { 'committed' }, { 'duplicate' } (the
// message completed before) or { 'conflict', rule ids… } (nothing written).
const COMMIT = `${COMPLETE_LUA}
local p = cjson.decode(ARGV[1])
local n = #p.transitions
local stateKey = KEYS[5 + n]
if p.message and isCompleted(stateKey, p.message) then return { 'duplicate' } end
local conflicts, checked = {}, {}
for _, t in ipairs(p.transitions) do
  if not checked[t.rule] then
    checked[t.rule] = true
    local current = redis.call('HGET', KEYS[1], t.rule)
    local token = ''
    if current then
      local decoded = cjson.decode(current)
      token = decoded.id .. ':' .. string.format('%d', decoded.version)
    end
    if token ~= t.expected then table.insert(conflicts, t.rule) end
  end
end
if #conflicts > 0 then return { 'conflict', unpack(conflicts) } end
for i, t in ipairs(p.transitions) do
  if t.activation == '' then redis.call('HDEL', KEYS[1], t.rule) else redis.call('HSET', KEYS[1], t.rule, t.activation) end
  if t.dueAt == '' then redis.call('ZREM', KEYS[2], t.member) else redis.call('ZADD', KEYS[2], t.dueAt, t.member) end
  if t.idOp == 'set' then redis.call('SET', KEYS[4 + i], t.member) elseif t.idOp == 'del' then redis.call('DEL', KEYS[4 + i]) end
end
for _, e in ipairs(p.outbox) do
  redis.call('HSET', KEYS[3], e[1], e[2])
  redis.call('ZADD', KEYS[4], p.leaseUntil, e[1])
end
if p.message then complete(stateKey, p.message) end
return { 'committed' }
`;

export type CommitOutcome =
  | { kind: 'committed' }
  /** The message completed before (a copy, or a concurrent evaluation of it): nothing written. */
  | { kind: 'duplicate' }
  /** These rules' conditions moved since they were read: nothing written. */
  | { kind: 'conflict'; rules: Set<string> };

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
  private readonly commitScript: (...args: ScriptArg[]) => Promise<string[]>;
  private readonly claim: (...args: ScriptArg[]) => Promise<string[]>;

  constructor(
    @Inject(REDIS_CLIENT) private readonly redis: Redis,
    @Inject(KERNEL_CONFIG) config: KernelConfig,
  ) {
    this.keys = alarmKeys(config.rules.redisNamespace);
    this.commitScript = defineScript(redis, 'dmpAlarmCommit', COMMIT);
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
   * Commits transitions (in order) with their outbox entries (leased until `leaseUntil`: the caller does
   * them now) and, when given, the completion of the message that caused them — all, or nothing.
   */
  async commit(change: {
    deviceId: string;
    transitions: readonly Transition[];
    outbox: readonly OutboxEntry[];
    leaseUntil: number;
    message?: { stateKey: string; completion: Completion };
  }): Promise<CommitOutcome> {
    const { deviceId, transitions, outbox, leaseUntil, message } = change;
    const keys = [this.keys.alarm(deviceId), this.keys.due, this.keys.outbox, this.keys.outboxLease];
    const planned = transitions.map((t) => {
      const activation = t.after ?? t.before;
      keys.push(this.keys.alarmId(activation?.id ?? 'none'));
      return {
        rule: t.ruleId,
        expected: t.before ? `${t.before.id}:${t.before.version}` : '',
        activation: t.after ? JSON.stringify(t.after) : '',
        member: dueMember(t.deviceId, t.ruleId),
        dueAt: t.after?.state === 'pending' ? String(t.after.dueAt) : '',
        idOp: !activation?.alarm ? '-' : t.after ? (t.before ? '-' : 'set') : 'del',
      };
    });
    if (message) keys.push(message.stateKey);
    const [kind, ...rules] = await this.commitScript(
      keys.length,
      ...keys,
      JSON.stringify({
        transitions: planned,
        outbox: outbox.map((entry) => [entry.id, JSON.stringify(entry)]),
        leaseUntil: String(leaseUntil),
        ...(message ? { message: message.completion } : {}),
      }),
    );
    if (kind === 'conflict') return { kind, rules: new Set(rules) };
    return { kind: kind === 'duplicate' ? 'duplicate' : 'committed' };
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
