import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { DmpError, StorageErrorCode } from '@dmp/contracts';
import { BatchWriter, type BatchWriterOptions } from './batch-writer';

const options = (over: Partial<BatchWriterOptions> = {}): BatchWriterOptions => ({
  maxRows: 3,
  maxWaitMs: 10_000,
  maxQueueRows: 100,
  retryBaseMs: 5,
  retryMaxMs: 200,
  ...over,
});

/** Records each batch the writer hands over; fails while `failures` > 0 or on items listed in `poison`. */
function recordingSink(failures = 0, poison: number[] = []) {
  const batches: number[][] = [];
  let left = failures;
  const sink = async (items: readonly number[]) => {
    await sleep(1);
    if (left > 0) {
      left--;
      throw new Error('connect ECONNREFUSED 127.0.0.1:8123');
    }
    if (items.some((i) => poison.includes(i)))
      throw new Error('Code: 27, e.displayText() = DB::Exception: Cannot parse input');
    batches.push([...items]);
  };
  return { sink, batches };
}

const isItemError = (error: unknown) => error instanceof Error && error.message.startsWith('Code: 27');

describe('BatchWriter', () => {
  it('flushes when maxRows items are queued, and resolves each write only after its batch is written', async () => {
    const { sink, batches } = recordingSink();
    const writer = new BatchWriter(sink, options());
    const settled: number[] = [];
    const writes = [1, 2, 3, 4].map((i) => writer.write(i).then(() => settled.push(i)));
    await Promise.all(writes.slice(0, 3));
    assert.deepEqual(batches, [[1, 2, 3]]);
    assert.deepEqual(settled, [1, 2, 3]);
    assert.equal(writer.queuedRows, 1, 'the 4th waits for the size or time trigger');
    await writer.close();
    await writes[3];
    assert.deepEqual(batches, [[1, 2, 3], [4]]);
  });

  it('flushes a partial batch once the oldest item waited maxWaitMs', async () => {
    const { sink, batches } = recordingSink();
    const writer = new BatchWriter(sink, options({ maxRows: 100, maxWaitMs: 40 }));
    const started = Date.now();
    await Promise.all([writer.write(1), writer.write(2)]);
    const elapsed = Date.now() - started;
    assert.deepEqual(batches, [[1, 2]]);
    assert.ok(elapsed >= 35 && elapsed < 1_000, `flushed after ${elapsed} ms`);
  });

  it('flushes once nothing arrived for idleMs, well before maxWaitMs', async () => {
    const { sink, batches } = recordingSink();
    const writer = new BatchWriter(sink, options({ maxRows: 100, maxWaitMs: 5_000, idleMs: 30 }));
    const started = Date.now();
    const first = [writer.write(1), writer.write(2)];
    await sleep(15);
    const third = writer.write(3); // arrives before the idle gap: joins the batch
    await Promise.all([...first, third]);
    const elapsed = Date.now() - started;
    assert.deepEqual(batches, [[1, 2, 3]]);
    assert.ok(elapsed >= 40 && elapsed < 1_000, `flushed after ${elapsed} ms`);
  });

  it('writes up to `concurrency` batches at once', async () => {
    let running = 0;
    let peak = 0;
    const writer = new BatchWriter<number>(
      async () => {
        running++;
        peak = Math.max(peak, running);
        await sleep(30);
        running--;
      },
      options({ maxRows: 2, concurrency: 2 }),
    );
    await Promise.all([1, 2, 3, 4, 5, 6].map((i) => writer.write(i)));
    assert.equal(peak, 2);
  });

  it('queues writes arriving during an insert and writes them in the next batch', async () => {
    const order: string[] = [];
    let release!: () => void;
    const gate = new Promise<void>((resolve) => (release = resolve));
    const writer = new BatchWriter<number>(
      async (items) => {
        order.push(`start ${items.join(',')}`);
        if (items[0] === 1) await gate;
        order.push(`end ${items.join(',')}`);
      },
      options({ maxRows: 2 }),
    );
    const first = [writer.write(1), writer.write(2)];
    await sleep(5);
    const second = [writer.write(3), writer.write(4), writer.write(5)];
    await sleep(5);
    assert.deepEqual(order, ['start 1,2'], 'one batch at a time');
    assert.equal(writer.heldRows, 5);
    release();
    await Promise.all([...first, ...second.slice(0, 2)]);
    await writer.close();
    await Promise.all(second);
    assert.deepEqual(order, ['start 1,2', 'end 1,2', 'start 3,4', 'end 3,4', 'start 5', 'end 5']);
  });

  it('tells how long the oldest held item has waited, queued or being written', async () => {
    let release = () => {};
    let calls = 0;
    // The first batch waits for release(); later ones are written at once.
    const sink = () =>
      calls++ === 0 ? new Promise<void>((resolve) => (release = resolve)) : Promise.resolve();
    const writer = new BatchWriter<number>(sink, options({ maxRows: 2 }));
    assert.equal(writer.oldestHeldAgeMs(), 0, 'nothing held');
    const first = [writer.write(1), writer.write(2)]; // a full batch: being written
    const t0 = Date.now(); // at or after their enqueue
    await sleep(20);
    const queuedAt = Date.now();
    const third = writer.write(3); // queued behind it, at or after queuedAt
    assert.ok(writer.oldestHeldAgeMs(t0 + 100) >= 100, 'the batch being written counts');
    release();
    await Promise.all(first);
    // The batch would be ≥ 70 ms old at queuedAt + 50; the queued item is at most 50.
    const age = writer.oldestHeldAgeMs(queuedAt + 50);
    assert.ok(age > 0 && age <= 50, `then the queued item: ${age} ms`);
    await writer.drain();
    await third;
    assert.equal(writer.oldestHeldAgeMs(), 0, 'nothing held once drained');
  });

  it('retries a failing insert with backoff while holding the batch, then resolves', async () => {
    const { sink, batches } = recordingSink(3);
    const retries: number[] = [];
    const writer = new BatchWriter(sink, options({ maxRows: 2, retryMaxMs: 5_000 }), {
      onRetry: (_error, attempt) => retries.push(attempt),
    });
    await Promise.all([writer.write(1), writer.write(2)]);
    assert.deepEqual(retries, [1, 2, 3]);
    assert.deepEqual(batches, [[1, 2]]);
  });

  it('rejects every write of the batch with a retryable DmpError once the retry budget is spent', async () => {
    const { sink, batches } = recordingSink(1_000);
    const writer = new BatchWriter(sink, options({ maxRows: 2, retryMaxMs: 60 }));
    const results = await Promise.allSettled([writer.write(1), writer.write(2)]);
    for (const result of results) {
      assert.equal(result.status, 'rejected');
      const reason = result.reason as DmpError;
      assert.ok(reason instanceof DmpError);
      assert.equal(reason.code, StorageErrorCode.Unavailable);
      assert.equal(reason.retryable, true);
    }
    assert.deepEqual(batches, []);
  });

  it('splits a batch the server refuses for its data, writes the good items and rejects the culprit for good', async () => {
    const { sink, batches } = recordingSink(0, [3]);
    const writer = new BatchWriter(sink, options({ maxRows: 5 }), { isItemError });
    const results = await Promise.allSettled([1, 2, 3, 4, 5].map((i) => writer.write(i)));
    assert.deepEqual(
      results.map((r) => r.status),
      ['fulfilled', 'fulfilled', 'rejected', 'fulfilled', 'fulfilled'],
    );
    const reason = (results[2] as PromiseRejectedResult).reason as DmpError;
    assert.equal(reason.code, StorageErrorCode.Unstorable);
    assert.equal(reason.retryable, false);
    assert.deepEqual(batches.flat().sort(), [1, 2, 4, 5]);
  });

  it('makes writers wait for room when maxQueueRows items are held (back-pressure)', async () => {
    let release!: () => void;
    const gate = new Promise<void>((resolve) => (release = resolve));
    const written: number[] = [];
    const writer = new BatchWriter<number>(
      async (items) => {
        await gate;
        written.push(...items);
      },
      options({ maxRows: 2, maxQueueRows: 3, maxWaitMs: 1 }),
    );
    const writes = [1, 2, 3].map((i) => writer.write(i));
    let fourthQueued = false;
    const fourth = writer.write(4).then(() => (fourthQueued = true));
    await sleep(20);
    assert.equal(writer.heldRows, 3, 'the 4th is not taken in while 3 are held');
    assert.equal(fourthQueued, false);
    release();
    await Promise.all([...writes, fourth]);
    assert.deepEqual(written, [1, 2, 3, 4]);
  });

  it('drains everything queued on close without waiting for the time trigger, then refuses writes', async () => {
    const { sink, batches } = recordingSink();
    const writer = new BatchWriter(sink, options({ maxRows: 2, maxWaitMs: 60_000 }));
    const writes = [1, 2, 3].map((i) => writer.write(i));
    const started = Date.now();
    await writer.close();
    await Promise.all(writes);
    assert.ok(Date.now() - started < 1_000);
    assert.deepEqual(batches, [[1, 2], [3]]);
    await assert.rejects(
      writer.write(4),
      (error: DmpError) => error.code === StorageErrorCode.Closed && error.retryable,
    );
  });

  it('gives up a retrying batch when close times out, rejecting it as retryable', async () => {
    const { sink } = recordingSink(1_000);
    const writer = new BatchWriter(sink, options({ maxRows: 1, retryMaxMs: 60_000 }));
    const write = writer.write(1);
    await sleep(10);
    await writer.close(50);
    await assert.rejects(
      write,
      (error: DmpError) => error.code === StorageErrorCode.Unavailable && error.retryable,
    );
  });
});
