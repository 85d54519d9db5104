/**
 * dmp-kernel's compare-and-set transitions in the real Redis (CompareAndSet): of two replicas moving a
 * condition or a command from the same state, one wins, and only the winner's outbox entries are
 * written — never a transition without its entries, never entries of a transition that lost.
 */
import type { CommandRecord, NormalizedTelemetry } from '@dmp/contracts';
import type { Activation, OutboxEntry, Transition } from '@dmp/rules';
import { stack } from '@dmp/testing';
import { Redis } from 'ioredis';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { AlarmStore } from '../apps/dmp-kernel/src/alarms/alarm.store';
import { CommandStore } from '../apps/dmp-kernel/src/commands/command.store';
import { loadKernelConfig } from '../apps/dmp-kernel/src/config';
import { DeviceStateStore } from '../apps/dmp-kernel/src/state/device-state.store';

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
  const states = new DeviceStateStore(redis, config);
  const outboxIds = async () => (await redis.hkeys(`${ns}:outbox`)).sort();
  const apply = async (transition: Transition, outbox: OutboxEntry[], leaseUntil: number) =>
    (await alarms.commit({ deviceId: transition.deviceId, transitions: [transition], outbox, leaseUntil }))
      .kind === 'committed';

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
    assert.equal(await apply(start, [event('start')], T0), true);
    assert.equal(await apply(start, [event('again')], T0), false, 'the condition moved already');
    assert.deepEqual(await alarms.due(T0 + 10_000, 10), [{ deviceId: pending.deviceId, ruleId: 'hot' }]);
    assert.deepEqual(await alarms.locate(pending.id), { deviceId: pending.deviceId, ruleId: 'hot' });

    const raise = (who: string): Promise<boolean> =>
      apply(
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
      await apply({ ...start, transition: 'cleared', before: active, after: undefined }, [], T0),
      true,
    );
    assert.equal(await alarms.locate(pending.id), undefined, 'cleared: the alarm id is forgotten');
  });

  it("writes a message's transitions with its state and completion, all or nothing, and once", async () => {
    const deviceId = `door-${run}`;
    const open: Activation = {
      id: `alm-door-${run}`,
      ruleId: 'door',
      deviceId,
      alarm: true,
      state: 'active',
      version: 1,
      ruleName: 'Door',
      severity: 'info',
      message: 'open',
      tenantId: 't',
      productId: 'p',
      siteId: 's',
      since: T0,
      dueAt: 0,
      raisedAt: T0,
      acknowledgedAt: 0,
      acknowledgedBy: '',
    };
    assert.ok(await apply({ ruleId: 'door', deviceId, transition: 'raised', ts: T0, after: open }, [], T0));
    const closed: NormalizedTelemetry = {
      deviceId,
      messageId: `${deviceId}-2`,
      kind: 'telemetry',
      ts: T0 + 1_000,
      receivedAt: T0 + 1_000,
      metrics: { door_open: false },
      tenantId: 't',
      productId: 'p',
      siteId: 's',
    };
    const clear = (before: Activation): Transition => ({
      ruleId: 'door',
      deviceId,
      transition: 'cleared',
      ts: closed.ts,
      before,
    });
    const complete = (before: Activation) =>
      alarms.commit({
        deviceId,
        transitions: [clear(before)],
        outbox: [event('door-cleared'), event('door-seen')],
        leaseUntil: T0,
        message: { stateKey: states.key(deviceId), completion: states.completion(closed, 'events') },
      });

    // An acknowledgement moved the condition since it was read: nothing of the message is written.
    assert.ok(
      await apply({ ...clear(open), transition: 'acknowledged', after: { ...open, version: 2 } }, [], T0),
    );
    assert.deepEqual(await complete(open), { kind: 'conflict', rules: new Set(['door']) });
    const untouched = await states.load(deviceId);
    assert.deepEqual([untouched.state.values, untouched.recent], [{}, []], 'no state without its transition');
    assert.ok(!(await outboxIds()).includes('evt:door-cleared'));

    assert.deepEqual(await complete({ ...open, version: 2 }), { kind: 'committed' });
    const done = await states.load(deviceId);
    assert.deepEqual(
      [done.state.values, done.recent, done.last],
      [{ door_open: false }, [closed.messageId], { events: closed.messageId }],
    );
    assert.equal(await alarms.get(deviceId, 'door'), undefined, 'cleared with the state that cleared it');
    assert.ok((await outboxIds()).includes('evt:door-seen'));

    // A copy of the message (the edge forwarded it twice), evaluated against the state before it: refused.
    await redis.hdel(`${ns}:outbox`, 'evt:door-seen');
    assert.deepEqual(await complete({ ...open, version: 2 }), { kind: 'duplicate' });
    assert.ok(!(await outboxIds()).includes('evt:door-seen'), 'its match actions are not owed again');
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
