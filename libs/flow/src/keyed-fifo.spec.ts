import assert from 'node:assert/strict';
import { afterEach, beforeEach, describe, it, mock } from 'node:test';
import { KeyedFifo, type KeyedFifoOptions } from './keyed-fifo';

interface Item {
  id: string;
  key: string;
  group?: string;
  size?: number;
}

/** A FIFO whose packs run until the spec ends them, recording each pack's ids. */
function harness(options: KeyedFifoOptions, fail?: (items: Item[]) => boolean) {
  const packs: string[][] = [];
  const running: (() => void)[] = [];
  const fifo = new KeyedFifo<Item>(options, {
    keyOf: (i) => i.key,
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

describe('KeyedFifo', () => {
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
    const fifo = new KeyedFifo<Item>(
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
    const fifo = new KeyedFifo<Item>(
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
