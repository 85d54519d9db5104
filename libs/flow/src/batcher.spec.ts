import assert from 'node:assert/strict';
import { afterEach, beforeEach, describe, it, mock } from 'node:test';
import { Batcher, type BatcherOptions } from './batcher';

interface Item {
  id: string;
  key: string;
  group?: string;
  size?: number;
}

/**
 * A batcher whose packs run until the spec ends them, recording each pack's ids; `ordered` (the
 * default) keys items by the letters of their id.
 */
function harness(options: BatcherOptions, fail?: (items: Item[]) => boolean, ordered = true) {
  const packs: string[][] = [];
  const running: (() => void)[] = [];
  const fifo = new Batcher<Item>(options, {
    keyOf: ordered ? (i) => i.key : undefined,
    groupOf: (i) => i.group ?? '',
    sizeOf: (i) => i.size ?? 1,
    run: (items) => {
      packs.push(items.map((i) => i.id));
      return new Promise<void>((resolve, reject) =>
        running.push(() => (fail?.(items) ? reject(new Error('failed')) : resolve())),
      );
    },
  });
  const add = (...ids: string[]) => {
    for (const id of ids) fifo.add({ id, key: id.replace(/\d+$/, '') });
  };
  /** Lets the microtasks of settled packs run, then the next turn of the event loop. */
  const nextTurn = async () => {
    for (let i = 0; i < 5; i++) await Promise.resolve();
    mock.timers.tick(0);
  };
  /** Ends the oldest running pack and lets the FIFO start what may go next. */
  const finish = async () => {
    running.shift()?.();
    await nextTurn();
  };
  return { fifo, packs, running, add, nextTurn, finish };
}

describe('Batcher with keyOf (per-key FIFO)', () => {
  beforeEach(() => mock.timers.enable({ apis: ['setTimeout', 'setImmediate', 'Date'] }));
  afterEach(() => mock.timers.reset());

  it("starts what one turn added in the next turn, one pack per key at a time, the key's next items once it settled", async () => {
    const h = harness({ maxItems: 10 });
    h.add('a1', 'b1', 'a2');
    assert.deepEqual(h.packs, [], 'nothing starts in the turn the items were added');
    await h.nextTurn();
    assert.deepEqual(h.packs, [['a1', 'a2', 'b1']]);
    h.add('a3', 'c1', 'a4');
    await h.nextTurn();
    assert.deepEqual(h.packs.at(-1), ['c1'], 'a waits for its pack; c has none running');
    assert.deepEqual([h.fifo.waiting, h.fifo.inFlight, h.fifo.packsInFlight], [2, 4, 2]);
    await h.finish();
    assert.deepEqual(h.packs.at(-1), ['a3', 'a4'], 'in the order added');
    await h.finish();
    await h.finish();
    assert.deepEqual([h.fifo.waiting, h.fifo.inFlight, h.fifo.packsInFlight], [0, 0, 0]);
  });

  it('cuts packs at maxItems, maxBytes (a larger item alone) and maxPerKey, and never mixes groups', async () => {
    const h = harness({ maxItems: 3, maxBytes: 10, maxPerKey: 2 });
    h.add('a1', 'a2', 'a3', 'b1', 'c1', 'd1');
    h.fifo.add({ id: 'x1', key: 'x', size: 20 });
    h.fifo.add({ id: 'y1', key: 'y', size: 6 });
    h.fifo.add({ id: 'y2', key: 'y', size: 6 });
    h.fifo.add({ id: 'g1', key: 'g', group: 'other' });
    await h.nextTurn();
    assert.deepEqual(h.packs, [['a1', 'a2', 'b1'], ['c1', 'd1'], ['x1'], ['y1'], ['g1']]);
    await h.finish();
    assert.deepEqual(h.packs.at(-1), ['a3']);
  });

  it('lets a pack that is not full wait until its first item lingered, and starts a full one at once', async () => {
    const h = harness({ maxItems: 3, lingerMs: 50 });
    h.add('a1');
    mock.timers.tick(30);
    h.add('b1');
    await h.nextTurn();
    mock.timers.tick(19);
    assert.deepEqual(h.packs, []);
    mock.timers.tick(1);
    assert.deepEqual(h.packs, [['a1', 'b1']]);
    h.add('c1', 'd1', 'e1', 'f1');
    await h.nextTurn();
    assert.deepEqual(h.packs.at(-1), ['c1', 'd1', 'e1'], 'full: no linger');
    mock.timers.tick(49);
    assert.equal(h.packs.length, 2);
    mock.timers.tick(1);
    assert.deepEqual(h.packs.at(-1), ['f1']);
  });

  it('keeps to maxInFlight over all keys, and what waits meanwhile goes packed', async () => {
    const h = harness({ maxItems: 10, maxInFlight: 1 });
    h.add('a1');
    await h.nextTurn();
    h.add('b1', 'c1', 'a2');
    await h.nextTurn();
    assert.equal(h.packs.length, 1);
    await h.finish();
    assert.deepEqual(h.packs, [['a1'], ['b1', 'c1', 'a2']]);
  });

  it("puts retried items back at their key's head and holds the key for the delay; other keys go on", async () => {
    const packs: string[][] = [];
    let retried = false;
    const fifo = new Batcher<Item>(
      { maxItems: 10, maxPerKey: 2 },
      {
        keyOf: (i) => i.key,
        run: async (items) => {
          packs.push(items.map((i) => i.id));
          if (!retried) {
            retried = true;
            fifo.retry(
              items.filter((i) => i.key === 'a'),
              100,
            );
          }
        },
      },
    );
    for (const id of ['a1', 'a2', 'b1']) fifo.add({ id, key: id.slice(0, 1) });
    mock.timers.tick(0);
    fifo.add({ id: 'a3', key: 'a' });
    fifo.add({ id: 'b2', key: 'b' });
    for (let i = 0; i < 5; i++) await Promise.resolve();
    mock.timers.tick(0);
    assert.deepEqual(packs, [['a1', 'a2', 'b1'], ['b2']], 'a backs off, b goes on');
    assert.deepEqual(fifo.waitingOf('a'), { items: 3, bytes: 0 });
    mock.timers.tick(99);
    assert.equal(packs.length, 2);
    mock.timers.tick(1);
    mock.timers.tick(0);
    assert.deepEqual(packs.at(-1), ['a1', 'a2'], 'the retried ones first, a3 behind them');
    for (let i = 0; i < 5; i++) await Promise.resolve();
    assert.throws(() => fifo.retry([{ id: 'a1', key: 'a' }]), /not in a running pack/);
  });

  it('removes waiting items as picked in order, never those running, and a removed head ends its backoff', async () => {
    const h = harness({ maxItems: 10, maxPerKey: 1 });
    h.add('a1', 'a2', 'a3', 'a4');
    await h.nextTurn();
    assert.deepEqual(
      h.fifo.remove('a', (i) => i.id === 'a1'),
      [],
      'a1 runs',
    );
    h.fifo.retry([{ id: 'a1', key: 'a' }], 60_000);
    await h.finish();
    assert.deepEqual(h.packs, [['a1']], 'a1 backs off at the head');
    // a2 is picked and a4 taken along behind it: the pick sees them in order.
    let behind = false;
    const picked = h.fifo.remove('a', (i) => (behind ||= i.id === 'a2') && i.id !== 'a3');
    assert.deepEqual(
      picked.map((i) => i.id),
      ['a2', 'a4'],
    );
    assert.deepEqual(
      h.fifo.remove('a', (i) => i.id === 'a1').map((i) => i.id),
      ['a1'],
    );
    await h.nextTurn();
    assert.deepEqual(h.packs, [['a1'], ['a3']], 'a3 goes without waiting for the backoff of a1');
    assert.deepEqual(
      h.fifo.remove('nobody', () => true),
      [],
    );
  });

  it('frees the key of a pack whose run fails or throws', async () => {
    let calls = 0;
    const packs: string[][] = [];
    const fifo = new Batcher<Item>(
      { maxItems: 1 },
      {
        keyOf: (i) => i.key,
        run: (items) => {
          packs.push(items.map((i) => i.id));
          if (++calls === 1) throw new Error('thrown');
          return Promise.reject(new Error('rejected'));
        },
      },
    );
    for (const id of ['a1', 'a2', 'a3']) fifo.add({ id, key: 'a' });
    for (let turn = 0; turn < 3; turn++) {
      mock.timers.tick(0);
      for (let i = 0; i < 5; i++) await Promise.resolve();
    }
    assert.deepEqual(packs, [['a1'], ['a2'], ['a3']]);
    assert.equal(fifo.packsInFlight, 0);
  });

  it('on close hands back what waits, takes nothing more and starts nothing', async () => {
    const h = harness({ maxItems: 10, lingerMs: 5 });
    h.add('a1');
    mock.timers.tick(5);
    h.add('a2', 'b1');
    assert.deepEqual(
      h.fifo.close().map((i) => i.id),
      ['a2', 'b1'],
    );
    assert.equal(h.fifo.add({ id: 'c1', key: 'c' }), false);
    await h.finish();
    mock.timers.tick(10);
    assert.deepEqual(h.packs, [['a1']]);
    assert.equal(h.fifo.waiting, 0);
  });
});

describe('Batcher without keyOf', () => {
  beforeEach(() => mock.timers.enable({ apis: ['setTimeout', 'setImmediate', 'Date'] }));
  afterEach(() => mock.timers.reset());
  const unordered = (options: BatcherOptions) => harness(options, undefined, false);

  it('holds a pack for the linger time, and starts a full one at once', async () => {
    const h = unordered({ maxItems: 3, lingerMs: 5 });
    h.add('a1', 'a2');
    await h.nextTurn();
    mock.timers.tick(4);
    assert.deepEqual([h.packs, h.fifo.waiting], [[], 2]);
    mock.timers.tick(1);
    assert.deepEqual(h.packs, [['a1', 'a2']]);
    h.add('b1', 'b2', 'b3', 'b4');
    assert.deepEqual(h.packs.at(-1), ['b1', 'b2', 'b3'], 'full: no linger');
    mock.timers.tick(5);
    assert.deepEqual(h.packs.at(-1), ['b4']);
    assert.deepEqual([h.fifo.waiting, h.fifo.inFlight, h.fifo.packsInFlight], [0, 6, 3]);
  });

  it('without linger starts an item at once, several packs of a key at a time: no order to keep', async () => {
    const h = unordered({ maxItems: 2, maxInFlight: 2 });
    h.add('a1', 'a2', 'a3', 'a4', 'a5');
    assert.deepEqual(h.packs, [['a1'], ['a2']]);
    await h.finish();
    assert.deepEqual(h.packs.at(-1), ['a3', 'a4'], 'what waited for room goes packed');
    assert.throws(() => h.fifo.retry([{ id: 'a1', key: 'a' }]), /only with keyOf/);
  });

  it('with idleMs starts a pack once nothing joined it for that long, within the linger time', async () => {
    const h = unordered({ maxItems: 100, lingerMs: 1_000, idleMs: 30 });
    h.add('a1');
    await h.nextTurn();
    mock.timers.tick(20);
    h.add('a2'); // before the idle gap: joins, and the gap starts again
    await h.nextTurn();
    mock.timers.tick(29);
    assert.equal(h.packs.length, 0);
    mock.timers.tick(1);
    assert.deepEqual(h.packs.at(-1), ['a1', 'a2']);
    for (let i = 3; i < 100; i++) {
      h.add(`a${i}`);
      await h.nextTurn();
      mock.timers.tick(20); // never idle: the linger time still ends the pack
    }
    assert.deepEqual(
      h.packs.map((p) => p.length),
      [2, 50],
    );
  });

  it('keeps filling a pack whose linger time is over until the window has room for it', async () => {
    const h = unordered({ maxItems: 4, maxInFlight: 1, lingerMs: 5 });
    h.add('a1');
    await h.nextTurn();
    mock.timers.tick(5);
    h.add('a2');
    await h.nextTurn();
    mock.timers.tick(5); // due, but the window is full
    h.add('a3', 'a4', 'a5', 'a6'); // 2–5 fill it; 6 waits for the next
    await h.finish();
    assert.deepEqual(h.packs, [['a1'], ['a2', 'a3', 'a4', 'a5']]);
    await h.finish();
    assert.deepEqual(h.packs.length, 2, 'a6 waits for its own linger time');
    mock.timers.tick(5);
    assert.deepEqual(h.packs.at(-1), ['a6']);
  });

  it('flushing eagerly starts packs at the next room without their linger time, still packed', async () => {
    const h = unordered({ maxItems: 3, maxInFlight: 1, lingerMs: 60_000 });
    h.add('a1');
    h.fifo.flushEagerly();
    assert.deepEqual(h.packs, [['a1']]);
    h.add('a2', 'a3', 'a4', 'a5');
    await h.finish();
    assert.deepEqual(h.packs, [['a1'], ['a2', 'a3', 'a4']]);
    await h.finish();
    assert.deepEqual(h.packs.at(-1), ['a5']);
    h.fifo.flushEagerly(false);
    await h.finish();
    h.add('a6');
    await h.nextTurn();
    assert.equal(h.packs.length, 3, 'lingers again');
    mock.timers.tick(60_000);
    assert.deepEqual(h.packs.at(-1), ['a6']);
  });

  it('keeps to its window, packs what waits meanwhile in the order added, never mixing groups', async () => {
    const h = unordered({ maxItems: 3, maxBytes: 100, maxInFlight: 1 });
    h.add('a1');
    await h.nextTurn();
    h.fifo.add({ id: 'g1', key: 'g', group: 'other' });
    h.add('a2', 'a3', 'a4', 'a5');
    h.fifo.add({ id: 'x1', key: 'x', size: 500 });
    h.add('a6');
    while (h.running.length > 0) await h.finish();
    assert.deepEqual(h.packs, [['a1'], ['g1'], ['a2', 'a3', 'a4'], ['a5'], ['x1'], ['a6']]);
    assert.deepEqual([h.fifo.waiting, h.fifo.inFlight, h.fifo.packsInFlight], [0, 0, 0]);
  });

  it('on close hands back what waits and takes nothing more', async () => {
    const h = unordered({ maxItems: 2, maxInFlight: 1 });
    h.add('a1', 'a2', 'a3', 'a4');
    assert.deepEqual(
      h.fifo.close().map((i) => i.id),
      ['a2', 'a3', 'a4'],
    );
    assert.equal(h.fifo.add({ id: 'b1', key: 'b' }), false);
    await h.finish();
    assert.deepEqual(h.packs, [['a1']]);
  });
});
