import assert from 'node:assert/strict';
import { afterEach, beforeEach, describe, it, mock } from 'node:test';
import { Batcher, type BatcherHooks, type BatcherOptions } from './batcher';

interface Item {
  id: number;
  group?: string;
  size?: number;
}

/** A batcher whose runs are held open until the spec ends them, recording each batch's ids. */
function harness(options: BatcherOptions, hooks: Partial<BatcherHooks<Item>> = {}) {
  const batches: number[][] = [];
  const running: (() => void)[] = [];
  const batcher = new Batcher<Item>(options, {
    groupOf: (i) => i.group ?? '',
    sizeOf: (i) => i.size ?? 1,
    run: (items) => {
      batches.push(items.map((i) => i.id));
      return new Promise<void>((resolve) => running.push(resolve));
    },
    ...hooks,
  });
  /** Ends the oldest running batch and lets the batcher react. */
  const finish = async () => {
    running.shift()?.();
    await new Promise<void>((resolve) => setImmediate(resolve));
  };
  return { batcher, batches, running, finish };
}

const ids = (from: number, n: number, more: Omit<Item, 'id'> = {}): Item[] =>
  Array.from({ length: n }, (_, i) => ({ id: from + i, ...more }));

describe('Batcher', () => {
  beforeEach(() => mock.timers.enable({ apis: ['setTimeout', 'Date'] }));
  afterEach(() => mock.timers.reset());

  it('holds items for the linger time, then starts them as one batch', () => {
    const h = harness({ maxItems: 100, lingerMs: 5 });
    for (const item of ids(1, 3)) h.batcher.add(item);
    mock.timers.tick(4);
    assert.deepEqual(h.batches, []);
    assert.equal(h.batcher.queued, 3);
    mock.timers.tick(1);
    assert.deepEqual(h.batches, [[1, 2, 3]]);
    assert.equal(h.batcher.queued, 0);
    assert.equal(h.batcher.inFlight, 3);
  });

  it('starts a batch at maxItems without waiting for the linger time', () => {
    const h = harness({ maxItems: 2, lingerMs: 10_000 });
    for (const item of ids(1, 5)) h.batcher.add(item);
    assert.deepEqual(h.batches, [
      [1, 2],
      [3, 4],
    ]);
    mock.timers.tick(10_000);
    assert.deepEqual(h.batches, [[1, 2], [3, 4], [5]]);
  });

  it('with idleMs starts an open batch once nothing joined it for that long, within the linger time', () => {
    const h = harness({ maxItems: 100, lingerMs: 1_000, idleMs: 30 });
    const sizes = () => h.batches.map((b) => b.length);
    h.batcher.add({ id: 1 });
    mock.timers.tick(20);
    h.batcher.add({ id: 2 }); // before the idle gap: joins, and the gap starts again
    mock.timers.tick(29);
    assert.deepEqual(h.batches, []);
    mock.timers.tick(1);
    assert.deepEqual(h.batches, [[1, 2]]);
    for (let i = 3; i < 100; i++) {
      h.batcher.add({ id: i });
      mock.timers.tick(20); // never idle: the linger time still ends the batch
    }
    assert.deepEqual(sizes(), [2, 50]);
  });

  it('keeps filling a batch whose linger time is over until the window has room for it', async () => {
    const h = harness({ maxItems: 4, maxInFlight: 1, lingerMs: 5 });
    h.batcher.add({ id: 1 });
    mock.timers.tick(5);
    assert.deepEqual(h.batches, [[1]]);
    h.batcher.add({ id: 2 });
    mock.timers.tick(5); // due, but the window is full
    for (const item of ids(3, 4)) h.batcher.add(item); // 2–5 fill it; 6 opens the next
    await h.finish();
    assert.deepEqual(h.batches, [[1], [2, 3, 4, 5]]);
    await h.finish();
    assert.deepEqual(h.batches, [[1], [2, 3, 4, 5]], '6 waits for its own linger time');
    mock.timers.tick(5);
    assert.deepEqual(h.batches, [[1], [2, 3, 4, 5], [6]]);
  });

  it('flushing eagerly starts open batches at the next room without their linger time, still packed', async () => {
    const h = harness({ maxItems: 3, maxInFlight: 1, lingerMs: 60_000 });
    h.batcher.add({ id: 1 });
    h.batcher.flushEagerly();
    assert.deepEqual(h.batches, [[1]]);
    for (const item of ids(2, 4)) h.batcher.add(item);
    await h.finish();
    assert.deepEqual(h.batches, [[1], [2, 3, 4]]);
    await h.finish();
    assert.deepEqual(h.batches, [[1], [2, 3, 4], [5]]);
    h.batcher.flushEagerly(false);
    await h.finish();
    h.batcher.add({ id: 6 });
    assert.deepEqual(h.batches, [[1], [2, 3, 4], [5]], 'lingers again');
    mock.timers.tick(60_000);
    assert.deepEqual(h.batches, [[1], [2, 3, 4], [5], [6]]);
  });

  it('without linger starts a lone item at once', () => {
    const h = harness({ maxItems: 100, maxInFlight: 1 });
    h.batcher.add({ id: 1 });
    assert.deepEqual(h.batches, [[1]]);
  });

  it('keeps to its window and packs what waits meanwhile, in arrival order', async () => {
    const h = harness({ maxItems: 3, maxInFlight: 2 });
    for (const item of ids(1, 10)) h.batcher.add(item);
    assert.equal(h.batcher.batchesInFlight, 2);
    assert.deepEqual(h.batches, [[1], [2]]);
    assert.equal(h.batcher.queued, 8);
    await h.finish();
    await h.finish();
    assert.deepEqual(h.batches, [[1], [2], [3, 4, 5], [6, 7, 8]]);
    await h.finish();
    await h.finish();
    assert.deepEqual(
      h.batches.flat(),
      ids(1, 10).map((i) => i.id),
    );
    assert.equal(h.batcher.queued, 0);
    await h.finish();
    assert.equal(h.batcher.batchesInFlight + h.batcher.inFlight, 0);
  });

  it('keeps a batch within maxBytes, a larger item going alone', async () => {
    const h = harness({ maxItems: 100, maxBytes: 100, maxInFlight: 1 });
    h.batcher.add({ id: 0, size: 1 });
    for (const item of [...ids(1, 4, { size: 30 }), { id: 9, size: 500 }, ...ids(10, 2, { size: 30 })])
      h.batcher.add(item);
    while (h.running.length > 0) await h.finish();
    assert.deepEqual(h.batches, [[0], [1, 2, 3], [4], [9], [10, 11]]);
  });

  it('never mixes groups in a batch, starting the oldest group first', async () => {
    const h = harness({ maxItems: 100, maxInFlight: 1 });
    h.batcher.add({ id: 0, group: 'A' });
    h.batcher.add({ id: 1, group: 'B' });
    h.batcher.add({ id: 2, group: 'A' });
    h.batcher.add({ id: 3, group: 'B' });
    while (h.running.length > 0) await h.finish();
    assert.deepEqual(h.batches, [[0], [1, 3], [2]]);
  });

  it('frees the place of a batch whose run fails or throws', async () => {
    let calls = 0;
    const h = harness(
      { maxItems: 1, maxInFlight: 1 },
      {
        run: (items) => {
          h.batches.push(items.map((i) => i.id));
          if (++calls === 1) throw new Error('thrown');
          return Promise.reject(new Error('rejected'));
        },
      },
    );
    for (const item of ids(1, 3)) h.batcher.add(item);
    for (let i = 0; i < 3; i++) await h.finish();
    assert.deepEqual(h.batches, [[1], [2], [3]]);
    assert.equal(h.batcher.batchesInFlight, 0);
  });

  it('on close hands back what had not started and takes nothing more', () => {
    const h = harness({ maxItems: 2, maxInFlight: 1, lingerMs: 5 });
    for (const item of ids(1, 5)) h.batcher.add(item);
    assert.deepEqual(h.batches, [[1, 2]]);
    assert.deepEqual(
      h.batcher.close().map((i) => i.id),
      [3, 4, 5],
    );
    assert.equal(h.batcher.add({ id: 6 }), false);
    mock.timers.tick(10);
    assert.deepEqual(h.batches, [[1, 2]]);
    assert.equal(h.batcher.queued, 0);
  });
});
