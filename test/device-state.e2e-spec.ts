/**
 * dmp-kernel's device state in the real Redis: the store's Lua keeps the same newest value per metric
 * as the engine's `mergeState`, whatever order two replicas' writes reach it in.
 */
import type { NormalizedTelemetry } from '@dmp/contracts';
import { emptyState, mergeState } from '@dmp/rules';
import { stack } from '@dmp/testing';
import { Redis } from 'ioredis';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { AlarmStore } from '../apps/dmp-kernel/src/alarms/alarm.store';
import { loadKernelConfig } from '../apps/dmp-kernel/src/config';
import { DeviceStateStore, RECENT_COMPLETED } from '../apps/dmp-kernel/src/state/device-state.store';

const run = randomBytes(3).toString('hex');
const T0 = Date.UTC(2026, 0, 1);

describe('the device state store (Redis)', () => {
  const redis = new Redis(stack.redis.url, { lazyConnect: true });
  const config = loadKernelConfig({ ...process.env, KERNEL_REDIS_NAMESPACE: `dmp-state-e2e-${run}` });
  const store = new DeviceStateStore(redis, config);
  const alarms = new AlarmStore(redis, config);
  /** Completes a message without transitions, as an evaluation that changed no condition does. */
  const complete = (m: NormalizedTelemetry) =>
    alarms.commit({
      deviceId: m.deviceId,
      transitions: [],
      outbox: [],
      leaseUntil: 0,
      message: { stateKey: store.key(m.deviceId), completion: store.completion(m, 'topic') },
    });
  let devices = 0;
  /** A device's messages: measured at T0 + offsetMs, received then. */
  const messages = () => {
    const deviceId = `state-${run}-${devices++}`;
    return (
      offsetMs: number,
      metrics: NormalizedTelemetry['metrics'],
      seq?: number,
    ): NormalizedTelemetry => ({
      deviceId,
      messageId: `${deviceId}-${offsetMs}-${seq ?? ''}`,
      kind: 'telemetry',
      ts: T0 + offsetMs,
      receivedAt: T0 + offsetMs,
      ...(seq === undefined ? {} : { seq }),
      metrics,
      tenantId: 't',
      productId: 'p',
      siteId: 's',
    });
  };
  /** Saves the messages in turn and returns the stored state, checking it against the engine's merge. */
  const saved = async (list: NormalizedTelemetry[]) => {
    for (const m of list) assert.deepEqual(await complete(m), { kind: 'committed' });
    const { state } = await store.load(list[0].deviceId);
    assert.deepEqual(state, list.reduce(mergeState, emptyState()), 'the engine keeps the same state');
    return state;
  };

  before(() => redis.connect());
  after(async () => {
    const keys = await redis.keys(`dmp-state-e2e-${run}:*`);
    if (keys.length > 0) await redis.del(...keys);
    redis.disconnect();
  });

  it('keeps the newest value per metric: a late message does not overwrite it', async () => {
    const at = messages();
    const state = await saved([at(5_000, { temp: 30 }, 2), at(1_000, { temp: 10, hum: 40 }, 1)]);
    assert.deepEqual(state.values, { temp: 30, hum: 40 });
    assert.deepEqual(state.ts, { temp: T0 + 5_000, hum: T0 + 1_000 });
  });

  it('of the same time, keeps the value of the higher seq, in either order', async () => {
    for (const order of [
      [8, 7],
      [7, 8],
    ]) {
      const at = messages();
      const state = await saved(order.map((seq) => at(1_000, { door: seq === 8 ? 'closed' : 'open' }, seq)));
      assert.deepEqual(
        [state.values, state.seq],
        [{ door: 'closed' }, { door: 8 }],
        `order ${order.join(', ')}`,
      );
    }
  });

  it('of the same time without a seq, keeps the one saved last', async () => {
    const at = messages();
    const state = await saved([at(1_000, { door: 'open' }, 9), at(1_000, { door: 'closed' })]);
    assert.deepEqual([state.values, state.seq], [{ door: 'closed' }, {}]);
  });

  it('remembers the last completed messages, as many as it keeps, and refuses them again', async () => {
    const at = messages();
    const list = Array.from({ length: RECENT_COMPLETED + 3 }, (_, i) => at(i * 1_000, { temp: i }, i));
    await saved(list);
    const { recent } = await store.load(list[0].deviceId);
    assert.deepEqual(
      recent,
      list.slice(3).map((m) => m.messageId),
      'the newest, oldest first',
    );
    assert.deepEqual(await complete(list[3]), { kind: 'duplicate' });
    assert.deepEqual(await complete(list[2]), { kind: 'committed' }, 'forgotten: too long ago');
  });
});
