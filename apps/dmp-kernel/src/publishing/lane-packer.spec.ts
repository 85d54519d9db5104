import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ItemCancelledError, LanePacker, PrecedingItemFailedError } from './lane-packer';

/** A send that waits until released, recording each pack. */
function gatedSend<T = number>() {
  const packs: { lane: string; items: T[] }[] = [];
  const gates: (() => void)[] = [];
  const send = (lane: string, items: readonly T[]) => {
    packs.push({ lane, items: [...items] });
    return new Promise<void>((resolve) => gates.push(resolve));
  };
  const release = async () => {
    await new Promise((resolve) => setImmediate(resolve));
    gates.splice(0).forEach((open) => open());
    await new Promise((resolve) => setImmediate(resolve));
  };
  return { packs, send, release };
}

const flush = () => new Promise((resolve) => setImmediate(resolve));

describe('LanePacker', () => {
  it('sends what one turn of the event loop added as one pack per lane', async () => {
    const { packs, send, release } = gatedSend();
    const packer = new LanePacker<number>({ maxItems: 100, maxBytes: 1_000 }, send);
    const done = [1, 2, 3].map((n) => packer.add('a', `k${n}`, n, 10)).concat(packer.add('b', 'k4', 4, 10));
    await release();
    await Promise.all(done);
    assert.deepEqual(packs, [
      { lane: 'a', items: [1, 2, 3] },
      { lane: 'b', items: [4] },
    ]);
  });

  it('keeps one send in flight per lane and packs what arrives meanwhile, in order', async () => {
    const { packs, send, release } = gatedSend();
    const packer = new LanePacker<number>({ maxItems: 100, maxBytes: 1_000 }, send);
    const first = packer.add('a', 'k1', 1, 10);
    await flush();
    const later = [2, 3, 4].map((n) => packer.add('a', `k${n}`, n, 10));
    await flush();
    assert.equal(packs.length, 1, 'the lane waits for its send in flight');
    assert.equal(packer.waiting, 3);
    assert.equal(packer.sending, 1);
    await release();
    await first;
    await release();
    await Promise.all(later);
    assert.deepEqual(
      packs.map((p) => p.items),
      [[1], [2, 3, 4]],
    );
    assert.equal(packer.waiting + packer.sending, 0);
  });

  it('cuts packs at maxItems and maxBytes, but sends an oversized item alone', async () => {
    const { packs, send, release } = gatedSend();
    const packer = new LanePacker<number>({ maxItems: 2, maxBytes: 25 }, send);
    const sizes = [10, 10, 10, 30, 5];
    const done = sizes.map((size, n) => packer.add('a', `k${n}`, n, size));
    for (let i = 0; i < 4; i++) await release();
    await Promise.all(done);
    assert.deepEqual(
      packs.map((p) => p.items),
      [[0, 1], [2], [3], [4]],
    );
  });

  it('fails every item of a failed pack with its error, and the lane goes on', async () => {
    let calls = 0;
    const packer = new LanePacker<number>({ maxItems: 10, maxBytes: 1_000 }, async () => {
      calls++;
      if (calls === 1) throw new Error('proxy away');
    });
    const failed = [1, 2].map((n) => packer.add('a', `k${n}`, n, 1));
    const results = await Promise.allSettled(failed);
    assert.deepEqual(
      results.map((r) => r.status === 'rejected' && (r.reason as Error).message),
      ['proxy away', 'proxy away'],
    );
    await packer.add('a', 'k3', 3, 1);
    assert.equal(calls, 2);
  });

  it('fails what waits behind a failed pack for the same keys, and nothing of other keys', async () => {
    const sent: string[][] = [];
    const packer = new LanePacker<string>({ maxItems: 2, maxBytes: 1_000 }, async (_, items) => {
      sent.push([...items]);
      if (sent.length === 1) throw new Error('proxy away');
    });
    // One device's burst added at once: d1 and e1 in the first pack, d2 and d3 behind it.
    const added = (['d1', 'e1', 'd2', 'e2', 'd3', 'f1'] as const).map((item) =>
      packer.add('a', item.slice(0, 1), item, 1),
    );
    const results = await Promise.allSettled(added);
    const outcome = (r: PromiseSettledResult<void>) =>
      r.status === 'fulfilled' ? 'stored' : r.reason instanceof PrecedingItemFailedError ? 'held' : 'failed';
    assert.deepEqual(results.map(outcome), ['failed', 'failed', 'held', 'held', 'held', 'stored']);
    assert.deepEqual(sent, [['d1', 'e1'], ['f1']], 'nothing of a failed key is sent after it');
    assert.equal(packer.waiting + packer.sending, 0);
    // The keys go on with what is added afterwards (the caller's retry).
    await packer.add('a', 'd', 'd1', 1);
    assert.deepEqual(sent.at(-1), ['d1']);
  });

  it('lets a pack that is not full linger for more items, and sends a full one at once', async () => {
    const packs: number[][] = [];
    const packer = new LanePacker<number>(
      { maxItems: 3, maxBytes: 1_000, lingerMs: 80 },
      async (_, items) => {
        packs.push([...items]);
      },
    );
    const started = Date.now();
    const first = packer.add('a', 'k1', 1, 1);
    await new Promise((resolve) => setTimeout(resolve, 20));
    const second = packer.add('a', 'k2', 2, 1);
    await flush();
    assert.equal(packs.length, 0, 'the pack lingers');
    await Promise.all([first, second]);
    assert.ok(Date.now() - started >= 75, 'sent once its first item lingered');
    assert.deepEqual(packs, [[1, 2]]);

    // A linger no test would wait for: a full pack (by count, then by bytes) must go without it.
    const patient = new LanePacker<number>(
      { maxItems: 3, maxBytes: 10, lingerMs: 600_000 },
      async (_, items) => {
        packs.push([...items]);
      },
    );
    const full = [3, 4, 5].map((n) => patient.add('a', `k${n}`, n, 1)).concat(patient.add('b', 'k6', 6, 10));
    await flush();
    assert.deepEqual(packs, [[1, 2], [3, 4, 5], [6]], 'a full pack does not linger');
    await Promise.all(full);
  });
});

describe('LanePacker bounds', () => {
  it('is full at maxWaitingItems or maxWaitingBytes waiting in the lane, and not counting the send in flight', async () => {
    const { send, release } = gatedSend();
    const packer = new LanePacker<number>(
      { maxItems: 100, maxBytes: 1_000, maxWaitingItems: 3, maxWaitingBytes: 50 },
      send,
    );
    const done = [packer.add('a', 'k0', 0, 10)];
    await flush();
    assert.equal(packer.sending, 1, 'the first item is in a send');
    assert.equal(packer.isFull('a'), false);
    done.push(packer.add('a', 'k1', 1, 10), packer.add('a', 'k2', 2, 10));
    assert.equal(packer.isFull('a'), false, 'two of three waiting');
    done.push(packer.add('a', 'k3', 3, 10));
    assert.equal(packer.isFull('a'), true, 'three waiting');
    assert.deepEqual(packer.laneWaiting('a'), { items: 3, bytes: 30 });
    assert.equal(packer.isFull('b'), false, 'another lane has its own bound');
    done.push(packer.add('b', 'k4', 4, 50));
    assert.equal(packer.isFull('b'), true, 'one item of maxWaitingBytes');
    assert.equal(packer.waitingBytes, 80);
    // The sends take what waits: the lanes have room again.
    for (let i = 0; i < 3; i++) await release();
    await Promise.all(done);
    assert.equal(packer.isFull('a'), false);
    assert.equal(packer.isFull('b'), false);
    assert.deepEqual([packer.waiting, packer.waitingBytes, packer.sending], [0, 0, 0]);
  });
});

describe('LanePacker cancellation', () => {
  const outcome = (r: PromiseSettledResult<void>) =>
    r.status === 'fulfilled'
      ? 'stored'
      : r.reason instanceof ItemCancelledError
        ? 'cancelled'
        : r.reason instanceof PrecedingItemFailedError
          ? 'held'
          : 'failed';

  it('adds nothing for a signal that already aborted', async () => {
    const { packs, send } = gatedSend();
    const packer = new LanePacker<number>({ maxItems: 10, maxBytes: 1_000 }, send);
    const result = await Promise.allSettled([packer.add('a', 'k', 1, 10, AbortSignal.abort('deadline'))]);
    assert.deepEqual(result.map(outcome), ['cancelled']);
    assert.equal(((result[0] as PromiseRejectedResult).reason as Error).cause, 'deadline');
    await flush();
    assert.deepEqual(packs, []);
    assert.equal(packer.waiting, 0);
  });

  it('drops the waiting items of an aborted signal, with their keys behind them, never one in a send', async () => {
    const { packs, send, release } = gatedSend<string>();
    const packer = new LanePacker<string>({ maxItems: 10, maxBytes: 1_000 }, send);
    const first = new AbortController();
    const second = new AbortController();
    const other = new AbortController();
    // In the send in flight: the first call's d1.
    const inFlight = packer.add('a', 'd', 'd1', 1, first.signal);
    await flush();
    // Waiting: the first call's d2 and e1, another call's d3 (behind d2) and f1, and a third call's g1.
    const waiting = [
      packer.add('a', 'd', 'd2', 1, first.signal),
      packer.add('a', 'e', 'e1', 1, first.signal),
      packer.add('a', 'd', 'd3', 1, second.signal),
      packer.add('a', 'f', 'f1', 1, second.signal),
      packer.add('b', 'g', 'g1', 1, other.signal),
    ];
    first.abort('cancelled');
    const dropped = await Promise.allSettled(waiting.slice(0, 3));
    assert.deepEqual(dropped.map(outcome), ['cancelled', 'cancelled', 'held']);
    assert.equal(packer.waiting, 2);
    for (let i = 0; i < 3; i++) await release();
    assert.deepEqual((await Promise.allSettled([inFlight, ...waiting.slice(3)])).map(outcome), [
      'stored',
      'stored',
      'stored',
    ]);
    assert.deepEqual(
      packs.map((p) => p.items),
      [['d1'], ['g1'], ['f1']],
      "the send that started goes on; nothing of the call's waiting items, nor d3 behind d2",
    );
    // Aborting once its items were taken changes nothing.
    other.abort('cancelled');
    assert.deepEqual([packer.waiting, packer.waitingBytes, packer.sending], [0, 0, 0]);
  });

  it('leaves a lane whose items were all cancelled usable: no empty pack, no timer left, one send at a time', async () => {
    const { packs, send, release } = gatedSend();
    // Cancelled while its pack lingers (a linger no test would wait for)…
    const patient = new LanePacker<number>({ maxItems: 10, maxBytes: 1_000, lingerMs: 600_000 }, send);
    const call = new AbortController();
    const lingering = patient.add('a', 'k', 1, 1, call.signal);
    call.abort('deadline');
    await assert.rejects(lingering, ItemCancelledError);
    // …and after its send was scheduled, before it took its pack.
    const packer = new LanePacker<number>({ maxItems: 10, maxBytes: 1_000 }, send);
    const call2 = new AbortController();
    const scheduled = packer.add('a', 'k', 2, 1, call2.signal);
    call2.abort('cancelled');
    await assert.rejects(scheduled, ItemCancelledError);
    await flush();
    assert.equal(packs.length, 0, 'no empty pack is sent');
    const later = [packer.add('a', 'k', 3, 1), packer.add('a', 'k', 4, 1)];
    await release();
    await Promise.all(later);
    assert.deepEqual(
      packs.map((p) => p.items),
      [[3, 4]],
    );
  });
});
