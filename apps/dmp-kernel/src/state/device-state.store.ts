import type { MetricValue, NormalizedTelemetry } from '@dmp/contracts';
import { defineScript, REDIS_CLIENT, type ScriptArg } from '@dmp/redis';
import { alarmKeys, emptyState, stateTimeOf, type DeviceState, type OutboxEntry } from '@dmp/rules';
import { Inject, Injectable } from '@nestjs/common';
import type { Redis } from 'ioredis';
import { KERNEL_CONFIG, type KernelConfig } from '../config';

/**
 * A device's recent state for rules (`state.prev` / `state.latest` / `state.ts`) in Redis, shared by all
 * replicas: hash `{ns}:state:{deviceId}` (ns: KERNEL_REDIS_NAMESPACE), field `m:{metric}` = `[value, ts, seq]` (JSON; no seq when the message had none), plus `last:{topic}` =
 * the id of the device's last message of that topic whose evaluation completed — RocketMQ delivers a
 * device's messages of one topic in order (one at a time, or in packs) and the next RocketMQ message only
 * once the previous is acknowledged, so a redelivery repeats at most the messages up to that one, and they
 * are recognized by it (`isEvaluated`). Expires after KERNEL_STATE_TTL_DAYS without messages.
 *
 * Writes keep the newest value per metric, atomically (Lua), by the engine's rule (`replacesKnown`: the
 * time `stateTimeOf` — the message's ts, at most its receivedAt — then seq): a late, older message does
 * not overwrite a newer value, and a value stamped ahead of its arrival does not hold off the next current
 * one.
 */
const METRIC_PREFIX = 'm:';
const LAST_PREFIX = 'last:';

// KEYS: state hash, outbox hash, outbox lease zset. ARGV: ttl, last field, message id, ts, seq ('' for
// none), lease until, number of outbox entries n, then n (id, entry) pairs, then (metric field, value) pairs.
const SAVE = `
local ts = tonumber(ARGV[4])
local seq = tonumber(ARGV[5])
local n = tonumber(ARGV[7])
local function replaces(current)
  if not current then return true end
  local known = cjson.decode(current)
  local knownTs = tonumber(known[2])
  if knownTs ~= ts then return knownTs < ts end
  return known[3] == nil or seq == nil or tonumber(known[3]) <= seq
end
for i = 8, 7 + 2 * n, 2 do
  redis.call('HSET', KEYS[2], ARGV[i], ARGV[i + 1])
  redis.call('ZADD', KEYS[3], ARGV[6], ARGV[i])
end
for i = 8 + 2 * n, #ARGV, 2 do
  if replaces(redis.call('HGET', KEYS[1], ARGV[i])) then
    redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1])
  end
end
redis.call('HSET', KEYS[1], ARGV[2], ARGV[3])
redis.call('EXPIRE', KEYS[1], ARGV[1])
return 1
`;

export interface StoredDeviceState {
  state: DeviceState;
  /** Last completed message id per topic. */
  last: Record<string, string>;
}

@Injectable()
export class DeviceStateStore {
  private readonly saveScript: (...args: ScriptArg[]) => Promise<number>;
  private readonly ttlSeconds: number;
  private readonly prefix: string;
  private readonly outbox: ReturnType<typeof alarmKeys>;

  constructor(
    @Inject(REDIS_CLIENT) private readonly redis: Redis,
    @Inject(KERNEL_CONFIG) config: KernelConfig,
  ) {
    this.prefix = `${config.rules.redisNamespace}:state:`;
    this.saveScript = defineScript(redis, 'dmpStateSave', SAVE, 3);
    this.ttlSeconds = config.rules.stateTtlSeconds;
    this.outbox = alarmKeys(config.rules.redisNamespace);
  }

  async load(deviceId: string): Promise<StoredDeviceState> {
    const hash = await this.redis.hgetall(`${this.prefix}${deviceId}`);
    const state = emptyState();
    const last: Record<string, string> = {};
    for (const [field, value] of Object.entries(hash)) {
      if (field.startsWith(METRIC_PREFIX)) {
        const [metric, ts, seq] = JSON.parse(value) as [MetricValue, number, number?];
        const name = field.slice(METRIC_PREFIX.length);
        state.values[name] = metric;
        state.ts[name] = ts;
        if (seq !== undefined) state.seq[name] = seq;
      } else if (field.startsWith(LAST_PREFIX)) last[field.slice(LAST_PREFIX.length)] = value;
    }
    return { state, last };
  }

  /**
   * Merges the message's metrics (newest wins) and records it as the topic's last completed message —
   * in the same atomic step as the outbox entries of its match actions (leased until `leaseUntil`: the
   * caller carries them out now): a message is either completed with everything it owes, or not at all.
   */
  async save(
    message: NormalizedTelemetry,
    topic: string,
    outbox: readonly OutboxEntry[] = [],
    leaseUntil = 0,
  ): Promise<void> {
    const at = stateTimeOf(message);
    const args: ScriptArg[] = [
      `${this.prefix}${message.deviceId}`,
      this.outbox.outbox,
      this.outbox.outboxLease,
      this.ttlSeconds,
      `${LAST_PREFIX}${topic}`,
      message.messageId,
      at,
      message.seq ?? '',
      leaseUntil,
      outbox.length,
    ];
    for (const entry of outbox) args.push(entry.id, JSON.stringify(entry));
    for (const [name, value] of Object.entries(message.metrics))
      args.push(
        `${METRIC_PREFIX}${name}`,
        JSON.stringify(message.seq === undefined ? [value, at] : [value, at, message.seq]),
      );
    await this.saveScript(...args);
  }
}

/**
 * Whether the `position`-th message of a device in one RocketMQ message (`deviceMessageIds`, that device's
 * messages in it, in order) was evaluated already, given the id of the device's last completed message of
 * the topic. RocketMQ hands a device's messages of a topic over in order, and a pack again only whole: a
 * redelivered pack's messages of a device up to its last completed one are done — whether the pack failed
 * on another device, or was sent twice by a producer retry.
 */
export function isEvaluated(
  deviceMessageIds: readonly string[],
  position: number,
  lastCompleted: string | undefined,
): boolean {
  if (lastCompleted === undefined) return false;
  return deviceMessageIds.lastIndexOf(lastCompleted) >= position;
}
