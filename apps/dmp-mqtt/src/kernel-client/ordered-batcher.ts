import { DmpError, errorMessage, HandOffErrorCode } from '@dmp/contracts';
import { AbortWatch, backoffDelay, Batcher } from '@dmp/flow';

/**
 * Micro-batching with per-key (per-device) order, bounded concurrency and bounded retries. Plain logic:
 * the transport (`send`) is injected, so it is tested without a network.
 *
 * Order. Each key has a FIFO queue (`Batcher` of `@dmp/flow`, key = device), and only its first
 * messages — up to `maxPerKey`, in queue order, all in one batch — are ever in a call; the key's next
 * messages go once that call was answered (and a message to retry waited its backoff). So a key never
 * has messages in two batches at once: with up to `maxConcurrentBatches` calls in flight finishing in
 * any order, and retries in between, a device's later message can never reach the kernel in an earlier
 * call than an earlier one.
 * Within one call the kernel keeps the order: it stores a device's messages of a topic in batch order
 * and answers those behind a failed one as retryable, not stored (DMP_ERR_PRECEDING_FAILED); they are
 * retried together, behind it. The alternatives were weaker: routing keys to a fixed number of sequential
 * lanes by hash also keeps order, but a hot or retrying lane stalls every device hashed to it and batches
 * only fill per lane. With `maxPerKey` 1 a device gets one message per round trip through (the round trip
 * includes the kernel's pack linger); more lets a device's burst, e.g. a replay after being offline, go in
 * a few round trips.
 *
 * Batching. A batch is cut when it starts: at `maxBatchSize` items or `maxBatchBytes`, once its first
 * message waited `lingerMs`; while every call slot is busy messages keep coming, so batches grow with
 * load. This class adds the retry and give-up rules to the FIFO.
 *
 * Retries. A call that fails, or an outcome marked retryable, puts the item back into a later batch
 * after an exponential backoff with jitter, still as the head of its key, with the key's retried
 * messages behind it (they wait for it rather than back off themselves). After `deadlineMs` since its
 * first attempt it is abandoned ({@link HandOffAbandonedError}) together with the messages of its key
 * queued behind it from the same source (same signal), and the key's later messages from that source
 * are refused, so none overtakes it when it comes back. An item whose signal aborts (its MQTT delivery can no longer be acknowledged) is abandoned as soon as it
 * is not in a call.
 *
 * Part of the per-device order invariant: see docs/engineering.md, "Per-device order".
 */
export interface OrderedBatcherOptions {
  maxBatchSize: number;
  /** Messages of one key in one batch at most (1: one per round trip). */
  maxPerKey: number;
  maxBatchBytes: number;
  lingerMs: number;
  maxConcurrentBatches: number;
  retry: { baseMs: number; maxBackoffMs: number; deadlineMs: number };
}

/** What the next hop answered for one item. */
export interface HandOffOutcome {
  accepted: boolean;
  retryable: boolean;
  errorCode?: string;
  errorMessage?: string;
}

/** Final answer for one item: taken, or refused for good (not retryable). */
export type FinalOutcome = { accepted: true } | { accepted: false; errorCode: string; errorMessage: string };

/** Sends one batch; answers one outcome per item, by position (`undefined` = no answer, retried). Throws = all retried. */
export type SendBatch<T> = (items: readonly T[]) => Promise<readonly (HandOffOutcome | undefined)[]>;

export interface OrderedBatcherHooks {
  onBatchDone?(size: number, seconds: number, error: unknown): void;
  onRetry?(reason: string): void;
  onAbandon?(reason: AbandonReason): void;
}

export type AbandonReason = 'aborted' | 'deadline' | 'behind-abandoned' | 'closed';

export class HandOffAbandonedError extends DmpError {
  constructor(
    readonly reason: AbandonReason,
    readonly attempts: number,
    readonly lastError: string | undefined,
  ) {
    super(
      HandOffErrorCode.Abandoned,
      `hand-off abandoned (${reason}) after ${attempts} attempt(s)${lastError ? `: ${lastError}` : ''}`,
      true,
    );
  }
}

interface Entry<T> {
  readonly key: string;
  readonly item: T;
  readonly bytes: number;
  readonly signal: AbortSignal | undefined;
  readonly resolve: (outcome: FinalOutcome) => void;
  readonly reject: (error: HandOffAbandonedError) => void;
  done: boolean;
  attempts: number;
  firstAttemptAt?: number;
  lastError?: string;
}

/** A key's messages of one call still to go, from its head, and the sources given up at its deadline. */
interface Retry<T> {
  entries: Entry<T>[];
  delayMs: number;
  gone: Set<AbortSignal | undefined>;
}

export class OrderedBatcher<T> {
  private readonly fifo: Batcher<Entry<T>>;
  private readonly calls = new Set<Promise<void>>();
  private readonly aborts = new AbortWatch<Entry<T>>((signal, entries) => this.onAbort(signal, entries));
  private pendingCount = 0;
  private closed = false;
  /** Keys whose head a source (signal) gave up: that source's later messages of the key come back after it. */
  private readonly gaps = new WeakMap<AbortSignal, Set<string>>();

  constructor(
    private readonly options: OrderedBatcherOptions,
    private readonly send: SendBatch<T>,
    private readonly hooks: OrderedBatcherHooks = {},
  ) {
    this.fifo = new Batcher<Entry<T>>(
      {
        maxItems: options.maxBatchSize,
        maxBytes: options.maxBatchBytes,
        maxPerKey: options.maxPerKey,
        lingerMs: options.lingerMs,
        maxInFlight: options.maxConcurrentBatches,
      },
      { keyOf: (entry) => entry.key, sizeOf: (entry) => entry.bytes, run: (batch) => this.track(batch) },
    );
  }

  /** Items submitted and not final yet. */
  get pending(): number {
    return this.pendingCount;
  }

  /** Resolves with the final outcome; rejects with {@link HandOffAbandonedError} when it gives up. */
  submit(
    key: string,
    item: T,
    { signal, bytes = 0 }: { signal?: AbortSignal; bytes?: number } = {},
  ): Promise<FinalOutcome> {
    return new Promise<FinalOutcome>((resolve, reject) => {
      if (this.closed || signal?.aborted) {
        reject(new HandOffAbandonedError(this.closed ? 'closed' : 'aborted', 0, undefined));
        return;
      }
      if (signal && this.gaps.get(signal)?.has(key)) {
        this.hooks.onAbandon?.('behind-abandoned');
        reject(new HandOffAbandonedError('behind-abandoned', 0, undefined));
        return;
      }
      const entry: Entry<T> = { key, item, bytes, signal, resolve, reject, done: false, attempts: 0 };
      this.pendingCount++;
      if (signal) this.aborts.add(signal, entry);
      this.fifo.add(entry);
    });
  }

  /** Stops: gives up everything not in a call now, and waits for the calls in flight. */
  async close(): Promise<void> {
    this.closed = true;
    for (const entry of this.fifo.close()) this.abandon(entry, 'closed');
    await Promise.allSettled([...this.calls]);
  }

  private track(batch: Entry<T>[]): Promise<void> {
    const call = this.sendBatch(batch);
    this.calls.add(call);
    void call.finally(() => this.calls.delete(call));
    return call;
  }

  private async sendBatch(batch: Entry<T>[]): Promise<void> {
    const now = Date.now();
    for (const entry of batch) {
      entry.attempts++;
      entry.firstAttemptAt ??= now;
    }
    const started = performance.now();
    let outcomes: readonly (HandOffOutcome | undefined)[] = [];
    let failure: unknown;
    try {
      outcomes = await this.send(batch.map((entry) => entry.item));
    } catch (error) {
      failure = error;
    }
    this.hooks.onBatchDone?.(batch.length, (performance.now() - started) / 1000, failure);
    const retries = new Map<string, Retry<T>>();
    batch.forEach((entry, i) => {
      const outcome = failure === undefined ? outcomes[i] : undefined;
      if (outcome?.accepted) this.finish(entry, { accepted: true });
      else if (outcome && !outcome.retryable) {
        this.finish(entry, {
          accepted: false,
          errorCode: outcome.errorCode || HandOffErrorCode.Rejected,
          errorMessage: outcome.errorMessage ?? '',
        });
      } else {
        const reason = outcome
          ? `${outcome.errorCode || 'retryable'}: ${outcome.errorMessage ?? ''}`
          : failure !== undefined
            ? errorMessage(failure)
            : 'no outcome for this message in the answer';
        let retry = retries.get(entry.key);
        if (!retry) retries.set(entry.key, (retry = { entries: [], delayMs: 0, gone: new Set() }));
        this.retry(entry, reason, retry);
      }
    });
    // Back at the head of their keys, before what waited meanwhile; the key waits for its head's backoff.
    for (const retry of retries.values()) {
      if (retry.entries.length > 0) this.fifo.retry(retry.entries, retry.delayMs);
    }
  }

  /** A message of the call to try again: the key's first such is its head, the others wait behind it. */
  private retry(entry: Entry<T>, reason: string, retry: Retry<T>): void {
    entry.lastError = reason;
    this.hooks.onRetry?.(reason);
    // Given up with the key's head before it (the head's deadline): it comes back after the head.
    if (retry.gone.has(entry.signal)) return this.abandon(entry, 'behind-abandoned');
    if (this.closed) return this.abandon(entry, 'closed');
    if (entry.signal?.aborted) return this.abandon(entry, 'aborted');
    if (retry.entries.length === 0) {
      const { baseMs, maxBackoffMs, deadlineMs } = this.options.retry;
      const delay = backoffDelay(entry.attempts, { baseMs, maxMs: maxBackoffMs, jitter: 0.5 });
      if (Date.now() + delay - entry.firstAttemptAt! > deadlineMs) return this.giveUp(entry, retry);
      retry.delayMs = delay;
    }
    retry.entries.push(entry);
  }

  /**
   * Abandons a key's head at its deadline. A gap in the key's sequence: what came after it from the same
   * source (in the call or waiting) is given up too, and what that source submits for the key later is
   * refused, so none overtakes it when it comes back.
   */
  private giveUp(head: Entry<T>, retry: Retry<T>): void {
    this.abandon(head, 'deadline');
    retry.gone.add(head.signal);
    for (const behind of this.fifo.remove(head.key, (entry) => entry.signal === head.signal)) {
      this.abandon(behind, 'behind-abandoned');
    }
    if (head.signal) {
      let keys = this.gaps.get(head.signal);
      if (!keys) this.gaps.set(head.signal, (keys = new Set()));
      keys.add(head.key);
    }
  }

  /** The signal's messages not in a call are abandoned; those in a call count with their answer. */
  private onAbort(signal: AbortSignal, entries: ReadonlySet<Entry<T>>): void {
    for (const key of new Set([...entries].map((entry) => entry.key))) {
      for (const entry of this.fifo.remove(key, (e) => e.signal === signal)) this.abandon(entry, 'aborted');
    }
  }

  private finish(entry: Entry<T>, outcome: FinalOutcome): void {
    if (this.settle(entry)) entry.resolve(outcome);
  }

  private abandon(entry: Entry<T>, reason: AbandonReason): void {
    if (!this.settle(entry)) return;
    this.hooks.onAbandon?.(reason);
    entry.reject(new HandOffAbandonedError(reason, entry.attempts, entry.lastError));
  }

  /** Marks an entry final. False when it already was. */
  private settle(entry: Entry<T>): boolean {
    if (entry.done) return false;
    entry.done = true;
    this.pendingCount--;
    this.aborts.delete(entry.signal, entry);
    return true;
  }
}
