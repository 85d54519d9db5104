import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ArrivalOrder } from './arrival-order';

const flush = () => new Promise((resolve) => setImmediate(resolve));

describe('ArrivalOrder', () => {
  it("lets a key's turns pass in the order they entered, whatever order they get ready in", async () => {
    const order = new ArrivalOrder();
    const passed: string[] = [];
    const first = order.enter('d');
    const second = order.enter('d');
    const other = order.enter('e');
    void second.ready.then(() => passed.push('d2'));
    void other.ready.then(() => passed.push('e1'));
    await flush();
    assert.deepEqual(passed, ['e1'], 'another key does not wait');
    first.leave();
    await flush();
    assert.deepEqual(passed, ['e1', 'd2']);
  });

  it('holds later turns behind an earlier one even when one in between left first', async () => {
    const order = new ArrivalOrder();
    const first = order.enter('d');
    const dropped = order.enter('d');
    dropped.leave(); // e.g. refused before reaching the hand-off
    const third = order.enter('d');
    let passed = false;
    void third.ready.then(() => (passed = true));
    await flush();
    assert.equal(passed, false, 'the first turn has not left');
    first.leave();
    await third.ready;
    third.leave();
    await flush();
    assert.equal(order.size, 0, 'nothing is kept once every turn left');
  });
});
