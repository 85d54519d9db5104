import type { MetricValue, NormalizedTelemetry } from '@dmp/contracts';
import { REDIS_CLIENT } from '@dmp/redis';
import { emptyState, stateTimeOf, type DeviceState } from '@dmp/rules';
import { Inject, Injectable } from '@nestjs/common';
import type { Redis } from 'ioredis';
import { KERNEL_CONFIG, type KernelConfig } from '../config';

/**
 * A device's recent state for rules (`state.prev` / `state.latest` / `state.ts`) in Redis, shared by all
 * replicas: hash `{ns}:state:{deviceId}` (ns: KERNEL_REDIS_NAMESPACE), field `m:{metric}` = `[value, ts, seq]`
 * (JSON; no seq when the message had none), and what tells a completed device message from a new one:
 * `last:{topic}` = the id of the device's last message of that topic whose evaluation completed — RocketMQ
 * delivers a device's messages of one topic in order (one at a time, or in packs) and the next RocketMQ
 * message only once the previous is acknowledged, so a redelivered pack repeats at most the messages up
 * to that one, and they are recognized by it (`isEvaluated`) — and `recent` = the ids of the device's last
 * RECENT_COMPLETED completed messages of any topic, for a copy that comes back in another RocketMQ message
 * (the edge forwarded it twice: a call whose answer was lost, an MQTT redelivery). Expires after
 * KERNEL_STATE_TTL_DAYS without messages.
 *
 * Written only by the atomic commit of an evaluation (AlarmStore.commit, with COMPLETE_LUA): the newest
 * value per metric by the engine's rule (`replacesKnown`: the time `stateTimeOf` — the message's ts, at
 * most its receivedAt — then seq), so a late, older message does not overwrite a newer value, and a value
 * stamped ahead of its arrival does not hold off the next current one.
 */
const METRIC_PREFIX = 'm:';
const LAST_PREFIX = 'last:';
const RECENT_FIELD = 'recent';
/** Completed message ids kept per device: a copy forwarded twice comes back within seconds, a few messages later. */
export const RECENT_COMPLETED = 32;

/** What COMPLETE_LUA writes for one device message (JSON, decoded by the script). */
export interface Completion {
  id: string;
  last: string;
  ttl: number;
  ts: number;
  seq?: number;
  /** (metric field, `[value, ts, seq]` JSON) pairs, flat. */
  metrics: string[];
}

/**
 * Lua functions over a device's state hash, for a script that completes a message (`c`: a Completion):
 * `isCompleted(key, c)` — the message is among the recently completed ones; `complete(key, c)` — merges
 * its metrics (newest wins) and records it as completed.
 */
export const COMPLETE_LUA = `
local function isCompleted(key, c)
  local recent = redis.call('HGET', key, '${RECENT_FIELD}')
  return recent ~= false and string.find(' ' .. recent .. ' ', ' ' .. c.id .. ' ', 1, true) ~= nil
end
local function complete(key, c)
  local function replaces(current)
    if not current then return true end
    local known = cjson.decode(current)
    local knownTs = tonumber(known[2])
    if knownTs ~= c.ts then return knownTs < c.ts end
    return known[3] == nil or c.seq == nil or tonumber(known[3]) <= c.seq
  end
  for i = 1, #c.metrics, 2 do
    if replaces(redis.call('HGET', key, c.metrics[i])) then redis.call('HSET', key, c.metrics[i], c.metrics[i + 1]) end
  end
  local recent = redis.call('HGET', key, '${RECENT_FIELD}')
  recent = recent and (recent .. ' ' .. c.id) or c.id
  local _, spaces = string.gsub(recent, ' ', ' ')
  for _ = ${RECENT_COMPLETED}, spaces do recent = string.sub(recent, string.find(recent, ' ', 1, true) + 1) end
  redis.call('HSET', key, '${RECENT_FIELD}', recent, c.last, c.id)
  redis.call('EXPIRE', key, c.ttl)
end
`;

export interface StoredDeviceState {
  state: DeviceState;
  /** Last completed message id per topic. */
  last: Record<string, string>;
  /** Ids of the device's last completed messages, any topic. */
  recent: readonly string[];
}

@Injectable()
export class DeviceStateStore {
  private readonly ttlSeconds: number;
  private readonly prefix: string;

  constructor(
    @Inject(REDIS_CLIENT) private readonly redis: Redis,
    @Inject(KERNEL_CONFIG) config: KernelConfig,
  ) {
    this.prefix = `${config.rules.redisNamespace}:state:`;
    this.ttlSeconds = config.rules.stateTtlSeconds;
  }

  key(deviceId: string): string {
    return `${this.prefix}${deviceId}`;
  }

  async load(deviceId: string): Promise<StoredDeviceState> {
    const hash = await this.redis.hgetall(this.key(deviceId));
    const state = emptyState();
    const last: Record<string, string> = {};
    let recent: string[] = [];
    for (const [field, value] of Object.entries(hash)) {
      if (field.startsWith(METRIC_PREFIX)) {
        const [metric, ts, seq] = JSON.parse(value) as [MetricValue, number, number?];
        const name = field.slice(METRIC_PREFIX.length);
        state.values[name] = metric;
        state.ts[name] = ts;
        if (seq !== undefined) state.seq[name] = seq;
      } else if (field.startsWith(LAST_PREFIX)) last[field.slice(LAST_PREFIX.length)] = value;
      else if (field === RECENT_FIELD) recent = value.split(' ');
    }
    return { state, last, recent };
  }

  /** What completing `message` of `topic` writes (COMPLETE_LUA). */
  completion(message: NormalizedTelemetry, topic: string): Completion {
    const at = stateTimeOf(message);
    const metrics: string[] = [];
    for (const [name, value] of Object.entries(message.metrics))
      metrics.push(
        `${METRIC_PREFIX}${name}`,
        JSON.stringify(message.seq === undefined ? [value, at] : [value, at, message.seq]),
      );
    return {
      id: message.messageId,
      last: `${LAST_PREFIX}${topic}`,
      ttl: this.ttlSeconds,
      ts: at,
      ...(message.seq === undefined ? {} : { seq: message.seq }),
      metrics,
    };
  }
}

/**
 * Whether the `position`-th message of a device in one RocketMQ message (`deviceMessageIds`, that device's
 * messages in it, in order) was evaluated already, given the id of the device's last completed message of
 * the topic and its recently completed ones. RocketMQ hands a device's messages of a topic over in order,
 * and a pack again only whole: a redelivered pack's messages of a device up to its last completed one are
 * done — whether the pack failed on another device, or was sent twice by a producer retry. A copy in
 * another RocketMQ message is recognized while its id is among the recent ones.
 */
export function isEvaluated(
  deviceMessageIds: readonly string[],
  position: number,
  lastCompleted: string | undefined,
  recent: readonly string[] = [],
): boolean {
  if (recent.includes(deviceMessageIds[position])) return true;
  if (lastCompleted === undefined) return false;
  return deviceMessageIds.lastIndexOf(lastCompleted) >= position;
}
