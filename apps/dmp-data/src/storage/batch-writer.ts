import { DmpError, errorMessage, StorageErrorCode } from '@dmp/contracts';
import { backoffDelay, Batcher } from '@dmp/flow';
import { setTimeout as sleep } from 'node:timers/promises';

export interface BatchWriterOptions {
  /** Flush when this many items are queued… */
  maxRows: number;
  /** …or when the oldest queued item waited this long… */
  maxWaitMs: number;
  /**
   * …or when nothing arrived for this long (0: off). A FIFO consumer gets no more messages of a
   * queue until it acked the ones it holds, so waiting longer only adds latency.
   */
  idleMs?: number;
  /** Batches written at the same time (default 1). */
  concurrency?: number;
  /** Items held (queued + being written); `write()` waits for room beyond it. */
  maxQueueRows: number;
  /** First retry delay; doubles per attempt, capped at 5 s. */
  retryBaseMs: number;
  /** Retry budget of one batch; then its items are rejected with a retryable error. */
  retryMaxMs: number;
}

/**
 * Writes one batch durably or throws. It must be idempotent: a batch (or part of it) is written again
 * after a failure.
 */
export type BatchSink<T> = (items: readonly T[], attempt: number) => Promise<void>;

export interface BatchWriterHooks<T> {
  /** Whether an error is caused by the items themselves (the batch is split to find them). */
  isItemError?: (error: unknown) => boolean;
  onRetry?: (error: unknown, attempt: number, items: number, delayMs: number) => void;
  onFailed?: (error: unknown, items: readonly T[], retryable: boolean) => void;
}

interface Pending<T> {
  item: T;
  enqueuedAt: number;
  resolve: () => void;
  reject: (error: unknown) => void;
}

const MAX_RETRY_DELAY_MS = 5_000;

/** OpenTelemetry caps links per span at 128 by default: a batch's insert links to that many producers. */
export const MAX_BATCH_LINKS = 128;

/**
 * Batches items by count, time and idleness, hands batches to the sink (up to `concurrency` at a
 * time), and settles each item's promise only when its batch is durable — so a consumer that acks
 * on resolution acks only what is stored. A failing batch is retried with backoff while it is held (new items queue
 * behind it, up to `maxQueueRows`); after the retry budget its items are rejected with a retryable
 * error (the broker redelivers them). Errors caused by the items themselves split the batch until
 * the culprits are alone, and those are rejected as not retryable.
 *
 * Which items travel together and when is the project's batching core (`Batcher` of @dmp/flow):
 * maxRows → maxItems, maxWaitMs → lingerMs, idleMs, concurrency → maxInFlight; draining flushes it
 * eagerly. What stays here is what only this writer does: the held-row bound, the per-item promises,
 * the retry budget and the bisection of refused batches.
 */
export class BatchWriter<T> {
  private readonly batcher: Batcher<Pending<T>>;
  /** Items in batches being written, counted until their batch's retries are over. */
  private writing = 0;
  /** Every item held (queued or being written), oldest first: settling one removes it. */
  private readonly held = new Set<Pending<T>>();
  private readonly flushes = new Set<Promise<void>>();
  private eager = false;
  private closed = false;
  private roomWaiters: (() => void)[] = [];
  private idleWaiters: (() => void)[] = [];
  private readonly abort = new AbortController();

  constructor(
    private readonly sink: BatchSink<T>,
    private readonly options: BatchWriterOptions,
    private readonly hooks: BatchWriterHooks<T> = {},
  ) {
    this.batcher = new Batcher<Pending<T>>(
      {
        maxItems: options.maxRows,
        // No max wait: a batch starts as soon as there is room, and the idle trigger has nothing to add.
        lingerMs: Math.max(0, options.maxWaitMs),
        idleMs: options.maxWaitMs > 0 ? (options.idleMs ?? 0) : 0,
        maxInFlight: Math.max(1, options.concurrency ?? 1),
      },
      { run: (batch) => this.flush(batch) },
    );
  }

  /** Items queued or being written. */
  get heldRows(): number {
    return this.batcher.waiting + this.writing;
  }

  get queuedRows(): number {
    return this.batcher.waiting;
  }

  /**
   * How long the oldest item held (queued or being written) has waited, 0 when none is held: what
   * grows when the sink is slow, whatever caps the number of items (a FIFO consumer holds at most
   * one receive batch per queue).
   */
  oldestHeldAgeMs(now = Date.now()): number {
    const oldest = this.held.values().next();
    return oldest.done ? 0 : Math.max(0, now - oldest.value.enqueuedAt);
  }

  /** Resolves once the item is durably written; rejects with a DmpError otherwise. */
  async write(item: T): Promise<void> {
    while (this.heldRows >= this.options.maxQueueRows && !this.closed)
      await new Promise<void>((resolve) => this.roomWaiters.push(resolve));
    if (this.closed) throw new DmpError(StorageErrorCode.Closed, 'the telemetry writer is closed', true);
    return new Promise<void>((resolve, reject) => {
      const pending: Pending<T> = {
        item,
        enqueuedAt: Date.now(),
        resolve: () => {
          this.held.delete(pending);
          resolve();
        },
        reject: (error) => {
          this.held.delete(pending);
          reject(error instanceof Error ? error : new Error(String(error)));
        },
      };
      this.held.add(pending);
      this.batcher.add(pending);
    });
  }

  /** From now on, writes what is queued without waiting for fuller batches. */
  flushEagerly(): void {
    this.eager = true;
    this.batcher.flushEagerly();
  }

  /** Writes everything queued now, and resolves when nothing is held any more. */
  async drain(): Promise<void> {
    this.batcher.flushEagerly();
    try {
      while (this.heldRows > 0) await new Promise<void>((resolve) => this.idleWaiters.push(resolve));
    } finally {
      if (!this.eager) this.batcher.flushEagerly(false);
    }
  }

  /** Drains, then refuses further writes; a batch still retrying gives up (its items are redelivered). */
  async close(drainTimeoutMs = 30_000): Promise<void> {
    const timeout = new Promise<'timeout'>((resolve) =>
      setTimeout(resolve, drainTimeoutMs, 'timeout').unref(),
    );
    const result = await Promise.race([this.drain().then(() => 'drained' as const), timeout]);
    this.closed = true;
    if (result === 'timeout') this.abort.abort();
    for (const pending of this.batcher.close())
      pending.reject(
        new DmpError(StorageErrorCode.Closed, 'the telemetry writer closed before writing', true),
      );
    for (const wake of this.roomWaiters.splice(0)) wake();
    await Promise.allSettled([...this.flushes]);
  }

  /** The core's run: one batch, held until written, given up or split to its culprits. */
  private flush(batch: Pending<T>[]): Promise<void> {
    this.writing += batch.length;
    const flush: Promise<void> = this.writeWithRetry(batch)
      // Only a throwing hook gets here: settle the batch rather than leave it hanging.
      .catch((error: unknown) => {
        for (const pending of batch) pending.reject(error);
      })
      .finally(() => {
        this.writing -= batch.length;
        this.flushes.delete(flush);
        for (const wake of this.roomWaiters.splice(0)) wake();
        if (this.heldRows === 0) for (const wake of this.idleWaiters.splice(0)) wake();
      });
    this.flushes.add(flush);
    return flush;
  }

  /** Writes a batch, retrying transient failures; splits it when the items themselves are refused. */
  private async writeWithRetry(batch: Pending<T>[]): Promise<void> {
    const started = Date.now();
    for (let attempt = 1; ; attempt++) {
      try {
        await this.sink(
          batch.map((p) => p.item),
          attempt,
        );
        for (const pending of batch) pending.resolve();
        return;
      } catch (error) {
        if (this.hooks.isItemError?.(error)) {
          if (batch.length === 1) {
            this.hooks.onFailed?.(error, [batch[0].item], false);
            batch[0].reject(
              new DmpError(
                StorageErrorCode.Unstorable,
                `ClickHouse refused the message: ${errorMessage(error)}`,
                false,
                {
                  cause: error,
                },
              ),
            );
            return;
          }
          const half = Math.ceil(batch.length / 2);
          await this.writeWithRetry(batch.slice(0, half));
          await this.writeWithRetry(batch.slice(half));
          return;
        }
        const jittered = Math.round(
          backoffDelay(attempt, { baseMs: this.options.retryBaseMs, maxMs: MAX_RETRY_DELAY_MS, jitter: 0.2 }),
        );
        if (Date.now() - started + jittered > this.options.retryMaxMs || this.abort.signal.aborted) {
          this.hooks.onFailed?.(
            error,
            batch.map((p) => p.item),
            true,
          );
          const failure = new DmpError(
            StorageErrorCode.Unavailable,
            `ClickHouse insert failed after ${attempt} attempt(s): ${errorMessage(error)}`,
            true,
            { cause: error },
          );
          for (const pending of batch) pending.reject(failure);
          return;
        }
        this.hooks.onRetry?.(error, attempt, batch.length, jittered);
        await sleep(jittered, undefined, { signal: this.abort.signal }).catch(() => undefined);
      }
    }
  }
}
