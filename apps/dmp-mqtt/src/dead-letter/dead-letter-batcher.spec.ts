import { DmpError } from '@dmp/contracts';
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import {
  DeadLetterBatcher,
  type DeadLetterBatcherHooks,
  type DeadLetterBatcherOptions,
} from './dead-letter-batcher';

interface Item {
  id: number;
  group: string;
  size: number;
}

const OPTIONS: DeadLetterBatcherOptions = {
  maxItems: 100,
  maxBytes: 1_000_000,
  maxConcurrentSends: 2,
  retry: { baseMs: 5, maxMs: 20 },
};

/** A send that records each batch, takes `delayMs`, and fails as `fail` says. */
function recorder(
  delayMs = 5,
  fail: (items: readonly Item[], call: number) => Error | undefined = () => undefined,
) {
  const batches: Item[][] = [];
  let concurrent = 0;
  let maxConcurrent = 0;
  let calls = 0;
  const send: DeadLetterBatcherHooks<Item>['send'] = async (items) => {
    const call = ++calls;
    concurrent++;
    maxConcurrent = Math.max(maxConcurrent, concurrent);
    try {
      await sleep(delayMs);
      const error = fail(items, call);
      if (error) throw error;
      batches.push([...items]);
    } finally {
      concurrent--;
    }
  };
  return {
    batches,
    send,
    get maxConcurrent() {
      return maxConcurrent;
    },
    get calls() {
      return calls;
    },
  };
}

const hooksOf = (
  send: DeadLetterBatcherHooks<Item>['send'],
  more: Partial<DeadLetterBatcherHooks<Item>> = {},
) => ({
  groupOf: (item: Item) => item.group,
  sizeOf: (item: Item) => item.size,
  send,
  ...more,
});

const items = (n: number, group = 'A', size = 10, from = 0): Item[] =>
  Array.from({ length: n }, (_, i) => ({ id: from + i, group, size }));

const transient = () => new DmpError('DMP_ERR_ROCKETMQ_SEND', 'CANCELLED', true);
const permanent = () => new DmpError('DMP_ERR_ROCKETMQ_REJECTED', 'too large', false);

describe('DeadLetterBatcher', () => {
  it('sends at once while a send is free: a lone refusal waits for nothing', async () => {
    const r = recorder(1);
    const batcher = new DeadLetterBatcher(OPTIONS, hooksOf(r.send));
    const signal = new AbortController().signal;
    assert.equal(await batcher.add({ id: 1, group: 'A', size: 1 }, signal), 'sent');
    assert.equal(await batcher.add({ id: 2, group: 'A', size: 1 }, signal), 'sent');
    assert.deepEqual(
      r.batches.map((b) => b.map((i) => i.id)),
      [[1], [2]],
    );
  });

  it('under a flood keeps to its concurrency and packs what waits: thousands of items, a few dozen sends', async () => {
    const r = recorder(5);
    const batcher = new DeadLetterBatcher(OPTIONS, hooksOf(r.send));
    const signal = new AbortController().signal;
    const flood = items(5_000);
    const outcomes = flood.map((item) => batcher.add(item, signal));
    assert.equal(batcher.queued + batcher.inFlight, 5_000);
    assert.equal(batcher.sendsInFlight, 2);
    assert.deepEqual(new Set(await Promise.all(outcomes)), new Set(['sent']));
    assert.ok(r.maxConcurrent <= 2, `${r.maxConcurrent} sends at once`);
    assert.ok(r.batches.length <= 52, `${r.batches.length} sends`);
    assert.ok(r.batches.every((b) => b.length <= 100));
    // Each item exactly once, in arrival order.
    assert.deepEqual(
      r.batches.flat().map((i) => i.id),
      flood.map((i) => i.id),
    );
    assert.equal(batcher.queued + batcher.inFlight + batcher.sendsInFlight, 0);
  });

  it('never mixes groups in a send and keeps each send within maxBytes', async () => {
    const r = recorder(2);
    const batcher = new DeadLetterBatcher(
      { ...OPTIONS, maxBytes: 100, maxConcurrentSends: 1 },
      hooksOf(r.send),
    );
    const signal = new AbortController().signal;
    const mixed = [...items(50, 'A', 30), ...items(50, 'B', 30, 100), { id: 999, group: 'A', size: 500 }];
    await Promise.all(mixed.map((item) => batcher.add(item, signal)));
    for (const batch of r.batches) {
      assert.equal(new Set(batch.map((i) => i.group)).size, 1);
      const bytes = batch.reduce((sum, i) => sum + i.size, 0);
      assert.ok(bytes <= 100 || batch.length === 1, `a send of ${bytes} bytes`);
    }
    assert.equal(r.batches.flat().length, 101);
  });

  it('retries transient failures without the items whose delivery ended meanwhile', async () => {
    const retries: number[] = [];
    const r = recorder(1, (_, call) => (call <= 2 ? transient() : undefined));
    const batcher = new DeadLetterBatcher(
      { ...OPTIONS, maxConcurrentSends: 1 },
      hooksOf(r.send, { onRetry: (_, attempt) => retries.push(attempt) }),
    );
    const kept = new AbortController();
    const lost = new AbortController();
    const first = batcher.add({ id: 1, group: 'A', size: 1 }, kept.signal);
    const gone = batcher.add({ id: 2, group: 'A', size: 1 }, lost.signal);
    const second = batcher.add({ id: 3, group: 'A', size: 1 }, kept.signal);
    lost.abort();
    assert.deepEqual(await Promise.all([first, gone, second]), ['sent', 'aborted', 'sent']);
    assert.deepEqual(retries, [1, 2]);
    assert.deepEqual(
      r.batches.flat().map((i) => i.id),
      [1, 3],
    );
  });

  it('waits between retries at most the backoff cap, the delay doubling up to it', async () => {
    const delays: number[] = [];
    const r = recorder(1, (_, call) => (call <= 10 ? transient() : undefined));
    const batcher = new DeadLetterBatcher(
      { ...OPTIONS, maxConcurrentSends: 1 },
      hooksOf(r.send, { onRetry: (_, _attempt, _items, delayMs) => delays.push(delayMs) }),
    );
    assert.equal(await batcher.add({ id: 1, group: 'A', size: 1 }, new AbortController().signal), 'sent');
    assert.equal(delays.length, 10);
    const { baseMs, maxMs } = OPTIONS.retry;
    delays.forEach((delay, i) => {
      const full = Math.min(maxMs, baseMs * 2 ** i);
      assert.ok(
        delay <= full && delay >= 0.8 * full,
        `retry ${i + 1}: ${delay} ms, not in [0.8, 1] × ${full}`,
      );
    });
  });

  it('splits a batch refused for good: only the culprit is refused, its neighbours are stored', async () => {
    const refused: number[] = [];
    const r = recorder(1, (batch) => (batch.some((i) => i.id === 7) ? permanent() : undefined));
    const batcher = new DeadLetterBatcher(
      { ...OPTIONS, maxConcurrentSends: 1 },
      hooksOf(r.send, { onRefused: (_, item) => refused.push(item.id) }),
    );
    const signal = new AbortController().signal;
    const outcomes = await Promise.all(items(10).map((item) => batcher.add(item, signal)));
    assert.deepEqual(refused, [7]);
    assert.equal(outcomes[7], 'refused');
    assert.equal(outcomes.filter((o) => o === 'sent').length, 9);
  });

  it('on close, what waits or retries ends as aborted (the broker redelivers it)', async () => {
    const r = recorder(1, () => transient());
    const batcher = new DeadLetterBatcher({ ...OPTIONS, maxConcurrentSends: 1 }, hooksOf(r.send));
    const signal = new AbortController().signal;
    const outcomes = items(5).map((item) => batcher.add(item, signal));
    await sleep(10);
    batcher.close();
    assert.deepEqual(await Promise.all(outcomes), Array(5).fill('aborted'));
    assert.equal(await batcher.add({ id: 9, group: 'A', size: 1 }, signal), 'aborted');
  });

  it('answers aborted at once for a delivery that already ended', async () => {
    const r = recorder();
    const batcher = new DeadLetterBatcher(OPTIONS, hooksOf(r.send));
    assert.equal(await batcher.add({ id: 1, group: 'A', size: 1 }, AbortSignal.abort()), 'aborted');
    assert.equal(r.calls, 0);
  });
});
