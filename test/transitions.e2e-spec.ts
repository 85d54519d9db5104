/**
 * dmp-kernel's compare-and-set transitions in the real Redis (CompareAndSet): of two replicas moving a
 * condition or a command from the same state, one wins, and only the winner's outbox entries are
 * written — never a transition without its entries, never entries of a transition that lost.
 */
import type { CommandRecord } from '@dmp/contracts';
import type { Activation, OutboxEntry, Transition } from '@dmp/rules';
import { stack } from '@dmp/testing';
import { Redis } from 'ioredis';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { AlarmStore } from '../apps/dmp-kernel/src/alarms/alarm.store';
import { CommandStore } from '../apps/dmp-kernel/src/commands/command.store';
import { loadKernelConfig } from '../apps/dmp-kernel/src/config';

const run = randomBytes(3).toString('hex');
const ns = `dmp-cas-e2e-${run}`;
const T0 = Date.UTC(2026, 0, 1);

const event = (id: string): OutboxEntry =>
  ({ id: `evt:${id}`, kind: 'event', event: { eventId: id } }) as unknown as OutboxEntry;

describe('compare-and-set transitions (Redis)', () => {
  const redis = new Redis(stack.redis.url, { lazyConnect: true });
  const config = loadKernelConfig({ ...process.env, KERNEL_REDIS_NAMESPACE: ns });
  const alarms = new AlarmStore(redis, config);
  const commands = new CommandStore(redis, config);
  const outboxIds = async () => (await redis.hkeys(`${ns}:outbox`)).sort();

  before(() => redis.connect());
  after(async () => {
    const keys = await redis.keys(`${ns}:*`);
    if (keys.length > 0) await redis.del(...keys);
    redis.disconnect();
  });

  it('lets one of two transitions from the same condition state win, with its outbox entries only', async () => {
    const pending: Activation = {
      id: `alm-${run}`,
      ruleId: 'hot',
      deviceId: `cas-${run}`,
      alarm: true,
      state: 'pending',
      version: 1,
      ruleName: 'Hot',
      severity: 'major',
      message: 'hot',
      tenantId: 't',
      productId: 'p',
      siteId: 's',
      since: T0,
      dueAt: T0 + 10_000,
      raisedAt: 0,
      acknowledgedAt: 0,
      acknowledgedBy: '',
    };
    const start: Transition = {
      ruleId: 'hot',
      deviceId: pending.deviceId,
      transition: 'pending',
      ts: T0,
      after: pending,
    };
    assert.equal(await alarms.apply(start, [event('start')], T0), true);
    assert.equal(await alarms.apply(start, [event('again')], T0), false, 'the condition moved already');
    assert.deepEqual(await alarms.due(T0 + 10_000, 10), [{ deviceId: pending.deviceId, ruleId: 'hot' }]);
    assert.deepEqual(await alarms.locate(pending.id), { deviceId: pending.deviceId, ruleId: 'hot' });

    const raise = (who: string): Promise<boolean> =>
      alarms.apply(
        {
          ...start,
          transition: 'raised',
          before: pending,
          after: { ...pending, state: 'active', version: 2, raisedAt: T0 },
        },
        [event(who)],
        T0 + 1,
      );
    const won = await Promise.all([raise('replica-a'), raise('replica-b')]);
    assert.deepEqual(won.toSorted(), [false, true], 'exactly one replica raises it');
    const winner = won[0] ? 'replica-a' : 'replica-b';
    assert.deepEqual(await outboxIds(), ['evt:start', `evt:${winner}`].sort());
    assert.equal(Number(await redis.zscore(`${ns}:outbox:lease`, `evt:${winner}`)), T0 + 1, 'leased');
    assert.deepEqual(await alarms.due(T0 + 10_000, 10), [], 'raised: no longer due');
    assert.equal((await alarms.get(pending.deviceId, 'hot'))?.version, 2);

    const active = (await alarms.get(pending.deviceId, 'hot'))!;
    assert.equal(
      await alarms.apply({ ...start, transition: 'cleared', before: active, after: undefined }, [], T0),
      true,
    );
    assert.equal(await alarms.locate(pending.id), undefined, 'cleared: the alarm id is forgotten');
  });

  it('writes a command record only from the version it was read at', async () => {
    const queued: CommandRecord = {
      commandId: `cmd-${run}`,
      deviceId: `cas-${run}`,
      ruleId: '',
      name: 'fan.on',
      paramsJson: '{}',
      state: 'queued',
      version: 1,
      ttlMs: 60_000,
      queuedAt: T0,
      sentAt: 0,
      expiresAt: T0 + 60_000,
      finishedAt: 0,
      sends: 0,
      resends: 0,
      reply: null,
      traceId: '',
      traceparent: '',
    };
    assert.equal(await commands.apply(queued, 0, [], T0), true);
    assert.equal(await commands.apply(queued, 0, [], T0), false, 'queued once');
    assert.deepEqual(await commands.due(T0 + 60_000, 10), [queued.commandId]);

    const finish = (who: string): Promise<boolean> =>
      commands.apply({ ...queued, state: 'expired', version: 2, finishedAt: T0 + 1 }, 1, [event(who)], T0);
    const won = await Promise.all([finish('sweeper-a'), finish('sweeper-b')]);
    assert.deepEqual(won.toSorted(), [false, true], 'one sweeper expires it');
    assert.ok((await outboxIds()).includes(`evt:${won[0] ? 'sweeper-a' : 'sweeper-b'}`));
    assert.ok(!(await outboxIds()).includes(`evt:${won[0] ? 'sweeper-b' : 'sweeper-a'}`));
    assert.deepEqual(await commands.due(T0 + 60_000, 10), [], 'finished: no longer due');
    assert.equal((await commands.get(queued.commandId))?.state, 'expired');
    assert.deepEqual(
      (await commands.listDevice(queued.deviceId, 10)).map((c) => c.version),
      [2],
    );
  });
});
