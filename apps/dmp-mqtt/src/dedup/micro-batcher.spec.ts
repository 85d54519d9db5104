import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { MicroBatcher } from './micro-batcher';

describe('MicroBatcher', () => {
  it('sends what arrives within the linger time as one batch, answering each item', async () => {
    const batches: number[][] = [];
    const batcher = new MicroBatcher<number, number>({ lingerMs: 5, maxItems: 100 }, async (items) => {
      batches.push([...items]);
      return items.map((n) => n * 2);
    });
    const results = await Promise.all([1, 2, 3].map((n) => batcher.submit(n)));
    assert.deepEqual(results, [2, 4, 6]);
    assert.deepEqual(batches, [[1, 2, 3]]);
  });

  it('closes a batch at maxItems without waiting', async () => {
    const batches: number[][] = [];
    const batcher = new MicroBatcher<number, number>({ lingerMs: 10_000, maxItems: 2 }, async (items) => {
      batches.push([...items]);
      return [...items];
    });
    const started = Date.now();
    assert.deepEqual(await Promise.all([1, 2, 3, 4].map((n) => batcher.submit(n))), [1, 2, 3, 4]);
    assert.ok(Date.now() - started < 1_000);
    assert.deepEqual(batches, [
      [1, 2],
      [3, 4],
    ]);
  });

  it('fails every item of a failed batch, and goes on with the next', async () => {
    let calls = 0;
    const batcher = new MicroBatcher<string, string>({ lingerMs: 1, maxItems: 10 }, async (items) => {
      if (++calls === 1) throw new Error('redis away');
      return [...items];
    });
    const failed = await Promise.allSettled([batcher.submit('a'), batcher.submit('b')]);
    assert.deepEqual(
      failed.map((r) => r.status),
      ['rejected', 'rejected'],
    );
    await sleep(2);
    assert.equal(await batcher.submit('c'), 'c');
  });
});
