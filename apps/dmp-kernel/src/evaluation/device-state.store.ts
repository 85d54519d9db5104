import type { MetricValue, NormalizedTelemetry } from '@dmp/contracts';
import { REDIS_CLIENT } from '@dmp/redis';
import { Inject, Injectable } from '@nestjs/common';
import type { Redis } from 'ioredis';
import { KERNEL_CONFIG, type KernelConfig } from '../config';
import { stateTimeOf, type DeviceState } from '../rules/engine';

/**
 * A device's recent state for rules (`state.prev` / `state.latest` / `state.ts`) in Redis, shared by all
 * replicas: hash `{ns}:state:{deviceId}` (ns: KERNEL_REDIS_NAMESPACE), field `m:{metric}` = `[value, ts]` (JSON), plus `last:{topic}` =
 * the id of the last message of that topic whose evaluation completed — RocketMQ delivers a device's
 * messages of one topic in order and the next only once the previous is acknowledged, so a redelivery is
 * always of that last message and is recognized by it. Expires after KERNEL_STATE_TTL_DAYS without messages.
 *
 * Writes keep the newest value per metric, atomically (Lua), by the same time as the engine's `mergeState`
 * (`stateTimeOf`: the message's ts, at most its receivedAt): a late, older message does not overwrite a
 * newer value, and a value stamped ahead of its arrival does not hold off the next current one.
 */
const METRIC_PREFIX = 'm:';
const LAST_PREFIX = 'last:';

const SAVE = `
local ts = tonumber(ARGV[4])
for i = 5, #ARGV, 2 do
  local current = redis.call('HGET', KEYS[1], ARGV[i])
  if (not current) or tonumber(cjson.decode(current)[2]) <= ts then
    redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1])
  end
end
redis.call('HSET', KEYS[1], ARGV[2], ARGV[3])
redis.call('EXPIRE', KEYS[1], ARGV[1])
return 1
`;

interface ScriptedRedis extends Redis {
  dmpStateSave(...args: (string | number)[]): Promise<number>;
}

export interface StoredDeviceState {
  state: DeviceState;
  /** Last completed message id per topic. */
  last: Record<string, string>;
}

@Injectable()
export class DeviceStateStore {
  private readonly redis: ScriptedRedis;
  private readonly ttlSeconds: number;
  private readonly prefix: string;

  constructor(@Inject(REDIS_CLIENT) redis: Redis, @Inject(KERNEL_CONFIG) config: KernelConfig) {
    this.prefix = `${config.rules.redisNamespace}:state:`;
    redis.defineCommand('dmpStateSave', { numberOfKeys: 1, lua: SAVE });
    this.redis = redis as ScriptedRedis;
    this.ttlSeconds = config.rules.stateTtlSeconds;
  }

  async load(deviceId: string): Promise<StoredDeviceState> {
    const hash = await this.redis.hgetall(`${this.prefix}${deviceId}`);
    const state: DeviceState = { values: {}, ts: {} };
    const last: Record<string, string> = {};
    for (const [field, value] of Object.entries(hash)) {
      if (field.startsWith(METRIC_PREFIX)) {
        const [metric, ts] = JSON.parse(value) as [MetricValue, number];
        const name = field.slice(METRIC_PREFIX.length);
        state.values[name] = metric;
        state.ts[name] = ts;
      } else if (field.startsWith(LAST_PREFIX)) last[field.slice(LAST_PREFIX.length)] = value;
    }
    return { state, last };
  }

  /** Merges the message's metrics (newest wins) and records it as the topic's last completed message. */
  async save(message: NormalizedTelemetry, topic: string): Promise<void> {
    const at = stateTimeOf(message);
    const args: (string | number)[] = [
      `${this.prefix}${message.deviceId}`,
      this.ttlSeconds,
      `${LAST_PREFIX}${topic}`,
      message.messageId,
      at,
    ];
    for (const [name, value] of Object.entries(message.metrics))
      args.push(`${METRIC_PREFIX}${name}`, JSON.stringify([value, at]));
    await this.redis.dmpStateSave(...args);
  }
}
