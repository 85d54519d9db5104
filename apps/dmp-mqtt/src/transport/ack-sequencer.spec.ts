import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { AckSequencer, NO_ACK } from './ack-sequencer';
import { matchesTopicFilter, matchingFilter, sharedSubscription } from './topic-filter';

describe('AckSequencer', () => {
  it('releases acknowledgements in arrival order whatever order processing finishes in', () => {
    const released: [string, number][] = [];
    const acks = new AckSequencer<string>((item, code) => released.push([item, code]));
    const a = acks.add('a');
    const b = acks.add('b');
    const c = acks.add('c');
    acks.settle(c, 0x99);
    acks.settle(b, 0);
    assert.deepEqual(released, []);
    assert.equal(acks.size, 3);
    acks.settle(a, 0);
    assert.deepEqual(released, [
      ['a', 0],
      ['b', 0],
      ['c', 0x99],
    ]);
    assert.equal(acks.size, 0);
  });

  it('holds everything behind an unsettled message, and hands it all back when the connection is gone', () => {
    const released: string[] = [];
    const acks = new AckSequencer<string>((item) => released.push(item));
    acks.add('stuck');
    const slots = Array.from({ length: 3000 }, (_, i) => acks.add(`m${i}`));
    for (const slot of slots) acks.settle(slot, 0);
    assert.equal(released.length, 0);
    const rest = acks.drain();
    assert.equal(rest.length, 3001);
    assert.equal(rest[0], 'stuck');
    assert.equal(acks.size, 0);
  });

  it('lets the messages behind one left without acknowledgement (NO_ACK) go in their order', () => {
    const released: [string, number][] = [];
    const acks = new AckSequencer<string>((item, code) => released.push([item, code]));
    const a = acks.add('a');
    const waiting = acks.add('registry away');
    const b = acks.add('b');
    const c = acks.add('c');
    acks.settle(b, 0);
    acks.settle(waiting, NO_ACK);
    assert.deepEqual(released, [], 'still behind the oldest');
    acks.settle(a, 0);
    assert.deepEqual(released, [
      ['a', 0],
      ['registry away', NO_ACK],
      ['b', 0],
    ]);
    acks.settle(c, 0);
    assert.deepEqual(released.at(-1), ['c', 0]);
    assert.equal(acks.size, 0);
  });

  it('settles each message once', () => {
    const released: string[] = [];
    const acks = new AckSequencer<string>((item) => released.push(item));
    const a = acks.add('a');
    acks.settle(a, 0);
    acks.settle(a, 0x80);
    assert.deepEqual(released, ['a']);
  });

  it('stays in order across its internal compaction', () => {
    const released: number[] = [];
    const acks = new AckSequencer<number>((item) => released.push(item));
    const slots = Array.from({ length: 5000 }, (_, i) => acks.add(i));
    slots.forEach((slot, i) => i % 2 === 1 && acks.settle(slot, 0));
    slots.forEach((slot, i) => i % 2 === 0 && acks.settle(slot, 0));
    assert.deepEqual(
      released,
      Array.from({ length: 5000 }, (_, i) => i),
    );
  });
});

describe('topic filters', () => {
  it('matches + and # wildcards', () => {
    assert.ok(matchesTopicFilter('devices/+/telemetry', 'devices/d1/telemetry'));
    assert.ok(!matchesTopicFilter('devices/+/telemetry', 'devices/d1/event'));
    assert.ok(!matchesTopicFilter('devices/+/telemetry', 'devices/d1/telemetry/x'));
    assert.ok(matchesTopicFilter('devices/#', 'devices/d1/telemetry'));
    assert.ok(matchesTopicFilter('devices/#', 'devices'));
    assert.ok(!matchesTopicFilter('+/x', '$SYS/x'));
  });

  it('finds the subscription a topic came through, and builds shared subscriptions', () => {
    const filters = ['devices/+/telemetry', 'devices/+/heartbeat'];
    assert.equal(matchingFilter(filters, 'devices/a/heartbeat'), 'devices/+/heartbeat');
    assert.equal(matchingFilter(filters, 'devices/a/event'), undefined);
    assert.equal(sharedSubscription('dmp', 'devices/+/event'), '$share/dmp/devices/+/event');
  });
});
