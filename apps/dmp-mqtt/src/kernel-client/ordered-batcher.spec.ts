import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { alignOutcomes } from './kernel-forwarder.service';
import type { EncodedTelemetry } from './kernel-ingest.client';
import {
  HandOffAbandonedError,
  OrderedBatcher,
  type HandOffOutcome,
  type OrderedBatcherOptions,
} from './ordered-batcher';

interface Msg {
  key: string;
  seq: number;
}

const options = (overrides: Partial<OrderedBatcherOptions> = {}): OrderedBatcherOptions => ({
  maxBatchSize: 100,
  maxPerKey: 1,
  maxBatchBytes: 1_000_000,
  lingerMs: 2,
  maxConcurrentBatches: 4,
  retry: { baseMs: 1, maxBackoffMs: 5, deadlineMs: 10_000 },
  ...overrides,
});

const ok: HandOffOutcome = { accepted: true, retryable: false };

async function abandonReason(promise: Promise<unknown>): Promise<string> {
  try {
    await promise;
  } catch (error) {
    assert.ok(error instanceof HandOffAbandonedError, String(error));
    return error.reason;
  }
  assert.fail('expected the hand-off to be abandoned');
}

/** A batcher whose calls fail (kernel unreachable) until `recover()`; `sent` is what got through. */
function unreachableUntilRecovered(deadlineMs: number) {
  let failing = true;
  const sent: number[] = [];
  const batcher = new OrderedBatcher<Msg>(
    options({ retry: { baseMs: 5, maxBackoffMs: 10, deadlineMs } }),
    async (items) => {
      if (failing) throw new Error('UNAVAILABLE');
      sent.push(...items.map((m) => m.seq));
      return items.map(() => ok);
    },
  );
  return { batcher, sent, recover: () => (failing = false) };
}

/** Each key's accepted sequence numbers: ascending, each once. */
function assertAcceptedInOrderOnce(accepted: ReadonlyMap<string, number[]>, keys: readonly string[]) {
  for (const key of keys) {
    const seqs = accepted.get(key) ?? [];
    assert.deepEqual(
      seqs,
      [...seqs].sort((a, b) => a - b),
      `${key} accepted in order`,
    );
    assert.equal(new Set(seqs).size, seqs.length, `${key} accepted once each`);
  }
}

describe('OrderedBatcher', () => {
  it('batches up to the maximum size, and sends a small batch after the linger time', async () => {
    const batches: number[] = [];
    const batcher = new OrderedBatcher<Msg>(options({ maxBatchSize: 10, lingerMs: 20 }), async (items) => {
      batches.push(items.length);
      return items.map(() => ok);
    });
    const started = Date.now();
    await Promise.all(
      Array.from({ length: 25 }, (_, i) => batcher.submit(`d${i}`, { key: `d${i}`, seq: 0 })),
    );
    assert.deepEqual(batches, [10, 10, 5]);
    assert.ok(Date.now() - started >= 15, 'the last, partial batch waited for the linger time');
  });

  it('closes a batch before it exceeds the byte budget', async () => {
    const batches: number[] = [];
    const batcher = new OrderedBatcher<Msg>(options({ maxBatchBytes: 1_000, lingerMs: 5 }), async (items) => {
      batches.push(items.length);
      return items.map(() => ok);
    });
    await Promise.all(
      Array.from({ length: 10 }, (_, i) => batcher.submit(`d${i}`, { key: `d${i}`, seq: 0 }, { bytes: 300 })),
    );
    assert.deepEqual(batches, [3, 3, 3, 1]);
  });

  it('never has more calls in flight than allowed, and batches grow while all are busy', async () => {
    let active = 0;
    let maxActive = 0;
    const sizes: number[] = [];
    const batcher = new OrderedBatcher<Msg>(
      options({ maxConcurrentBatches: 2, lingerMs: 0 }),
      async (items) => {
        active++;
        maxActive = Math.max(maxActive, active);
        sizes.push(items.length);
        await sleep(10);
        active--;
        return items.map(() => ok);
      },
    );
    const all: Promise<unknown>[] = [];
    for (let i = 0; i < 200; i++) {
      all.push(batcher.submit(`d${i}`, { key: `d${i}`, seq: 0 }));
      if (i % 20 === 0) await sleep(1);
    }
    await Promise.all(all);
    assert.equal(maxActive, 2);
    assert.ok(Math.max(...sizes) > 20, `batches should grow under load: ${sizes.join(',')}`);
  });

  it('keeps per-key order with concurrent calls finishing out of order, failures and retries', async () => {
    const received = new Map<string, number[]>();
    const accepted = new Map<string, number[]>();
    let duplicateKeyInBatch = false;
    const batcher = new OrderedBatcher<Msg>(
      options({ maxBatchSize: 16, maxConcurrentBatches: 6, lingerMs: 1 }),
      async (items) => {
        if (new Set(items.map((m) => m.key)).size !== items.length) duplicateKeyInBatch = true;
        await sleep(Math.random() * 6);
        if (Math.random() < 0.15) throw new Error('kernel unreachable');
        return items.map((m) => {
          received.set(m.key, [...(received.get(m.key) ?? []), m.seq]);
          const roll = Math.random();
          if (roll < 0.15) return { accepted: false, retryable: true, errorCode: 'DMP_ERR_BUSY' };
          if (roll < 0.17) return undefined; // the kernel forgot to answer for it
          accepted.set(m.key, [...(accepted.get(m.key) ?? []), m.seq]);
          return ok;
        });
      },
    );
    const keys = Array.from({ length: 12 }, (_, i) => `dev-${i}`);
    const all: Promise<unknown>[] = [];
    for (let seq = 0; seq < 40; seq++) {
      for (const key of keys) if (Math.random() < 0.8) all.push(batcher.submit(key, { key, seq }));
      await sleep(Math.random() * 2);
    }
    await Promise.all(all);
    assert.equal(duplicateKeyInBatch, false, 'a key never has two messages in one batch');
    assertAcceptedInOrderOnce(accepted, keys);
    for (const key of keys) {
      const attempts = received.get(key) ?? [];
      for (let i = 1; i < attempts.length; i++) {
        assert.ok(
          attempts[i] >= attempts[i - 1],
          `${key}: ${attempts[i]} reached the kernel after ${attempts[i - 1]}`,
        );
      }
    }
    assert.equal(batcher.pending, 0);
  });

  it("sends a key's burst in batches of up to maxPerKey, in order, one batch of the key at a time", async () => {
    const batches: number[][] = [];
    const batcher = new OrderedBatcher<Msg>(options({ maxPerKey: 4, lingerMs: 1 }), async (items) => {
      batches.push(items.map((m) => m.seq));
      await sleep(5);
      return items.map(() => ok);
    });
    const first = batcher.submit('d', { key: 'd', seq: 0 });
    // Arriving one by one while the first's batch is still open: they join it, up to maxPerKey.
    const rest = Array.from({ length: 9 }, (_, i) => batcher.submit('d', { key: 'd', seq: i + 1 }));
    await Promise.all([first, ...rest]);
    assert.deepEqual(batches, [
      [0, 1, 2, 3],
      [4, 5, 6, 7],
      [8, 9],
    ]);
  });

  it('with several messages of a key per batch keeps per-key order through failures, held answers and retries', async () => {
    const accepted = new Map<string, number[]>();
    const inCalls = new Set<string>();
    let keyInTwoCalls = false;
    let maxOfKeyInBatch = 0;
    const batcher = new OrderedBatcher<Msg>(
      options({ maxBatchSize: 24, maxPerKey: 5, maxConcurrentBatches: 6, lingerMs: 1 }),
      async (items) => {
        const keys = new Set(items.map((m) => m.key));
        for (const key of keys) {
          if (inCalls.has(key)) keyInTwoCalls = true;
          inCalls.add(key);
          maxOfKeyInBatch = Math.max(maxOfKeyInBatch, items.filter((m) => m.key === key).length);
        }
        try {
          await sleep(Math.random() * 6);
          if (Math.random() < 0.1) throw new Error('kernel unreachable');
          // The kernel's contract: a key's messages are taken in batch order, and those behind one it
          // could not take are not taken either (answered retryable).
          const failed = new Set<string>();
          return items.map((m) => {
            if (failed.has(m.key))
              return { accepted: false, retryable: true, errorCode: 'DMP_ERR_PRECEDING_FAILED' };
            const roll = Math.random();
            if (roll < 0.12) {
              failed.add(m.key);
              return roll < 0.02
                ? undefined
                : { accepted: false, retryable: true, errorCode: 'DMP_ERR_BUSY' };
            }
            accepted.set(m.key, [...(accepted.get(m.key) ?? []), m.seq]);
            return ok;
          });
        } finally {
          for (const key of keys) inCalls.delete(key);
        }
      },
    );
    const keys = Array.from({ length: 8 }, (_, i) => `dev-${i}`);
    const all: Promise<unknown>[] = [];
    for (let seq = 0; seq < 60; seq++) {
      for (const key of keys) if (Math.random() < 0.8) all.push(batcher.submit(key, { key, seq }));
      if (seq % 3 === 0) await sleep(Math.random() * 2);
    }
    await Promise.all(all);
    assert.equal(keyInTwoCalls, false, 'a key is never in two calls at once');
    assert.ok(maxOfKeyInBatch > 1 && maxOfKeyInBatch <= 5, `messages of a key per batch: ${maxOfKeyInBatch}`);
    assertAcceptedInOrderOnce(accepted, keys);
    assert.equal(batcher.pending, 0);
  });

  it('resolves non-retryable refusals as final and lets the next message of the device go', async () => {
    const batcher = new OrderedBatcher<Msg>(options(), async (items) =>
      items.map((m) =>
        m.seq === 1
          ? { accepted: false, retryable: false, errorCode: 'DMP_ERR_UNKNOWN_DEVICE', errorMessage: 'who?' }
          : ok,
      ),
    );
    const [first, second] = await Promise.all([
      batcher.submit('d', { key: 'd', seq: 1 }),
      batcher.submit('d', { key: 'd', seq: 2 }),
    ]);
    assert.deepEqual(first, { accepted: false, errorCode: 'DMP_ERR_UNKNOWN_DEVICE', errorMessage: 'who?' });
    assert.deepEqual(second, { accepted: true });
  });

  it('gives up after the retry deadline, with what queued behind it from the same source, but not later sources', async () => {
    const { batcher, sent, recover } = unreachableUntilRecovered(60);
    const connectionA = new AbortController();
    const connectionB = new AbortController();
    const first = batcher.submit('d', { key: 'd', seq: 1 }, { signal: connectionA.signal });
    const behind = batcher.submit('d', { key: 'd', seq: 2 }, { signal: connectionA.signal });
    const redelivered = batcher.submit('d', { key: 'd', seq: 1 }, { signal: connectionB.signal });
    assert.equal(await abandonReason(first), 'deadline');
    recover();
    assert.equal(await abandonReason(behind), 'behind-abandoned');
    assert.deepEqual(await redelivered, { accepted: true });
    assert.deepEqual(sent, [1]);
  });

  it('refuses what a source submits for a key after giving up its head, until the source is replaced', async () => {
    const { batcher, sent, recover } = unreachableUntilRecovered(40);
    const connectionA = new AbortController();
    assert.equal(
      await abandonReason(batcher.submit('d', { key: 'd', seq: 1 }, { signal: connectionA.signal })),
      'deadline',
    );
    recover();
    // Message 2 arrives on the same connection after 1 was given up (before the connection is replaced).
    assert.equal(
      await abandonReason(batcher.submit('d', { key: 'd', seq: 2 }, { signal: connectionA.signal })),
      'behind-abandoned',
    );
    // Other keys of that source, and the key on the next connection, go on.
    assert.deepEqual(await batcher.submit('e', { key: 'e', seq: 7 }, { signal: connectionA.signal }), {
      accepted: true,
    });
    const connectionB = new AbortController();
    assert.deepEqual(await batcher.submit('d', { key: 'd', seq: 1 }, { signal: connectionB.signal }), {
      accepted: true,
    });
    assert.deepEqual(sent, [7, 1]);
  });

  it('abandons messages whose delivery can no longer be acknowledged', async () => {
    let calls = 0;
    const batcher = new OrderedBatcher<Msg>(
      options({ retry: { baseMs: 10_000, maxBackoffMs: 10_000, deadlineMs: 60_000 } }),
      async (items) => {
        calls++;
        return items.map(() => ({ accepted: false, retryable: true }));
      },
    );
    const connection = new AbortController();
    const inBackoff = batcher.submit('d', { key: 'd', seq: 1 }, { signal: connection.signal });
    const waiting = batcher.submit('d', { key: 'd', seq: 2 }, { signal: connection.signal });
    await sleep(20); // the first attempt failed: now backing off for ~10 s
    const started = Date.now();
    connection.abort();
    assert.equal(await abandonReason(inBackoff), 'aborted');
    assert.equal(await abandonReason(waiting), 'aborted');
    assert.ok(Date.now() - started < 1_000, 'abandoned at once, not after the backoff');
    assert.equal(calls, 1);
    await assert.rejects(
      batcher.submit('e', { key: 'e', seq: 1 }, { signal: connection.signal }),
      HandOffAbandonedError,
    );
  });

  it('on close gives up what is not in a call and waits for the calls in flight', async () => {
    let release!: () => void;
    const gate = new Promise<void>((resolve) => (release = resolve));
    const batcher = new OrderedBatcher<Msg>(options({ lingerMs: 0 }), async (items) => {
      await gate;
      return items.map(() => ok);
    });
    const inCall = batcher.submit('d', { key: 'd', seq: 1 });
    const queued = batcher.submit('d', { key: 'd', seq: 2 });
    await sleep(5);
    const closed = batcher.close();
    assert.equal(await abandonReason(queued), 'closed');
    release();
    await closed;
    assert.deepEqual(await inCall, { accepted: true });
    assert.equal(await abandonReason(batcher.submit('d', { key: 'd', seq: 3 })), 'closed');
  });
});

describe('alignOutcomes', () => {
  const message = (messageId: string) => ({ messageId }) as EncodedTelemetry;
  const outcome = (messageId: string, accepted = true) => ({
    messageId,
    accepted,
    retryable: false,
    errorCode: '',
    errorMessage: '',
  });

  it('takes outcomes by position when the kernel answered in order, else by message id', () => {
    const messages = [message('a'), message('b'), message('a')];
    assert.deepEqual(alignOutcomes(messages, [outcome('a'), outcome('b'), outcome('a', false)]), [
      outcome('a'),
      outcome('b'),
      outcome('a', false),
    ]);
    assert.deepEqual(alignOutcomes(messages, [outcome('b'), outcome('a', false)]), [
      outcome('a', false),
      outcome('b'),
      undefined,
    ]);
  });
});
