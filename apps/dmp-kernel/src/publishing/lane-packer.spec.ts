import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { LanePacker, PrecedingItemFailedError } from './lane-packer';

/** A send that waits until released, recording each pack. */
function gatedSend() {
  const packs: { lane: string; items: number[] }[] = [];
  const gates: (() => void)[] = [];
  const send = (lane: string, items: readonly number[]) => {
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
