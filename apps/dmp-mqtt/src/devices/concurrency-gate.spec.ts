import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ConcurrencyGate } from './concurrency-gate';

describe('concurrency gate', () => {
  it('runs at most maxRunning at once, queues maxQueued in order, refuses the rest at once', async () => {
    const gate = new ConcurrencyGate(2, 1);
    const releases: (() => void)[] = [];
    const order: number[] = [];
    const task = (n: number) => () =>
      new Promise<number>((resolve) => releases.push(() => (order.push(n), resolve(n))));
    const a = gate.run(task(1));
    const b = gate.run(task(2));
    const c = gate.run(task(3));
    assert.equal(await gate.run(task(4)), undefined, 'queue full: refused without running');
    assert.equal(gate.refused, 1);
    assert.equal(gate.active, 2);
    assert.equal(gate.waiting, 1);
    releases.shift()!();
    assert.deepEqual(await a, { value: 1 });
    await new Promise((r) => setImmediate(r));
    assert.equal(releases.length, 2, 'the queued task got the freed slot');
    releases.shift()!();
    releases.shift()!();
    assert.deepEqual([await b, await c], [{ value: 2 }, { value: 3 }]);
    assert.deepEqual(order, [1, 2, 3]);
    assert.equal(gate.active, 0);
  });

  it('frees the slot when a task throws', async () => {
    const gate = new ConcurrencyGate(1, 0);
    await assert.rejects(gate.run(() => Promise.reject(new Error('boom'))));
    assert.deepEqual(await gate.run(() => Promise.resolve(7)), { value: 7 });
  });
});
