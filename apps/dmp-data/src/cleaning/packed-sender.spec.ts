import { DmpError } from '@dmp/contracts';
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { PackedSender, type PackedSenderOptions } from './packed-sender';

interface Item {
  id: number;
  size: number;
}

const OPTIONS: PackedSenderOptions = { maxItems: 100, maxBytes: 1_000, maxConcurrentSends: 2 };

/** A send that records each batch, takes `delayMs`, and fails as `fail` says. */
function recorder(delayMs = 2, fail: (items: readonly Item[]) => Error | undefined = () => undefined) {
  const batches: number[][] = [];
  let concurrent = 0;
  let maxConcurrent = 0;
  const send = async (items: readonly Item[]) => {
    concurrent++;
    maxConcurrent = Math.max(maxConcurrent, concurrent);
    try {
      await sleep(delayMs);
      const error = fail(items);
      if (error) throw error;
      batches.push(items.map((i) => i.id));
    } finally {
      concurrent--;
    }
  };
  return {
    batches,
    sender: (options = OPTIONS) => new PackedSender<Item>(options, { sizeOf: (i) => i.size, send }),
    get maxConcurrent() {
      return maxConcurrent;
    },
  };
}

const items = (n: number, size = 10, from = 0): Item[] =>
  Array.from({ length: n }, (_, i) => ({ id: from + i, size }));

describe('PackedSender', () => {
  it('sends a lone item at once, alone', async () => {
    const r = recorder();
    const sender = r.sender();
    await sender.add({ id: 1, size: 1 });
    await sender.add({ id: 2, size: 1 });
    assert.deepEqual(r.batches, [[1], [2]]);
  });

  it('under a flood keeps to its concurrency and packs what waits, each item once, in order', async () => {
    const r = recorder(5);
    const sender = r.sender({ maxItems: 50, maxBytes: 1_000_000, maxConcurrentSends: 2 });
    const flood = items(1_000);
    const done = flood.map((item) => sender.add(item));
    assert.equal(sender.sendsInFlight, 2);
    assert.equal(sender.queued, 998);
    await Promise.all(done);
    assert.ok(r.maxConcurrent <= 2);
    assert.ok(r.batches.length <= 22, `${r.batches.length} sends`);
    assert.ok(r.batches.every((b) => b.length <= 50));
    assert.deepEqual(
      r.batches.flat(),
      flood.map((i) => i.id),
    );
    assert.equal(sender.queued + sender.sendsInFlight, 0);
  });

  it('keeps each send within maxBytes, sending a larger item alone', async () => {
    const r = recorder();
    const sender = r.sender({ maxItems: 100, maxBytes: 100, maxConcurrentSends: 1 });
    const all = [...items(20, 30), { id: 99, size: 500 }, ...items(5, 30, 100)];
    await Promise.all(all.map((item) => sender.add(item)));
    const sizes = new Map(all.map((i) => [i.id, i.size]));
    for (const batch of r.batches) {
      const bytes = batch.reduce((sum, id) => sum + sizes.get(id)!, 0);
      assert.ok(bytes <= 100 || batch.length === 1, `a send of ${bytes} bytes`);
    }
    assert.equal(r.batches.flat().length, all.length);
  });

  it('rejects the items of a failed send with its error, and goes on with the next ones', async () => {
    let failing = true;
    const r = recorder(1, () =>
      failing ? new DmpError('DMP_ERR_ROCKETMQ_SEND', 'CANCELLED', true) : undefined,
    );
    const sender = r.sender({ ...OPTIONS, maxConcurrentSends: 1 });
    const first = sender.add({ id: 1, size: 1 });
    await assert.rejects(first, { code: 'DMP_ERR_ROCKETMQ_SEND' });
    failing = false;
    await sender.add({ id: 2, size: 1 });
    assert.deepEqual(r.batches, [[2]]);
  });

  it('splits a batch refused for good: only the culprit is rejected, its neighbours are sent', async () => {
    const r = recorder(1, (batch) =>
      batch.some((i) => i.id === 7)
        ? new DmpError('DMP_ERR_ROCKETMQ_REJECTED', 'too large', false)
        : undefined,
    );
    const sender = r.sender({ ...OPTIONS, maxConcurrentSends: 1 });
    const outcomes = await Promise.allSettled(items(10).map((item) => sender.add(item)));
    assert.deepEqual(
      outcomes.flatMap((o, i) => (o.status === 'rejected' ? [i] : [])),
      [7],
    );
    assert.equal(r.batches.flat().length, 9);
  });
});
