import { DmpError, errorMessage, HandOffErrorCode } from '@dmp/contracts';
import { backoffDelay } from '@dmp/flow';

/**
 * Micro-batching with per-key (per-device) order, bounded concurrency and bounded retries. Plain logic:
 * the transport (`send`) is injected, so it is tested without a network.
 *
 * Order. Each key has a FIFO queue, and only its first messages — up to `maxPerKey`, in queue order, all
 * in one batch — are ever in the pipeline (open batch, batch in flight, or the first of them waiting to
 * retry); the key's next messages enter a batch once those are final. So a key never has messages in two
 * batches at once: with up to `maxConcurrentBatches` calls in flight finishing in any order, and retries
 * in between, a device's later message can never reach the kernel in an earlier call than an earlier one.
 * Within one call the kernel keeps the order: it stores a device's messages of a topic in batch order
 * and answers those behind a failed one as retryable, not stored (DMP_ERR_PRECEDING_FAILED); they are
 * retried together, behind it. The alternatives were weaker: routing keys to a fixed number of sequential
 * lanes by hash also keeps order, but a hot or retrying lane stalls every device hashed to it and batches
 * only fill per lane. With `maxPerKey` 1 a device gets one message per round trip through (the round trip
 * includes the kernel's pack linger); more lets a device's burst, e.g. a replay after being offline, go in
 * a few round trips.
 *
 * Batching. A batch closes at `maxBatchSize` items or `maxBatchBytes`, or `lingerMs` after its first
 * item; while every call slot is busy it keeps filling instead, so batches grow with load.
 *
 * Retries. A call that fails, or an outcome marked retryable, puts the item back into a later batch
 * after an exponential backoff with jitter, still as the head of its key, with the key's retried
 * messages behind it (they wait for it rather than back off themselves). After `deadlineMs` since its
 * first attempt it is abandoned ({@link HandOffAbandonedError}) together with the messages of its key
 * queued behind it from the same source (same signal), and the key's later messages from that source
 * are refused, so none overtakes it when it comes back. An
 * item whose signal aborts (its MQTT delivery can no longer be acknowledged) is abandoned as soon as it
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

type EntryState = 'waiting' | 'queued' | 'sending' | 'backoff' | 'done';

interface Entry<T> {
  readonly key: string;
  readonly item: T;
  readonly bytes: number;
  readonly signal: AbortSignal | undefined;
  readonly resolve: (outcome: FinalOutcome) => void;
  readonly reject: (error: HandOffAbandonedError) => void;
  state: EntryState;
  /** While queued: the batch, and its place among its key's messages there (0: the key's head). */
  batch?: Entry<T>[];
  position: number;
  attempts: number;
  firstAttemptAt?: number;
  lastError?: string;
  timer?: NodeJS.Timeout;
}

/** The entries not final yet of one signal, and the one listener that abandons them when it aborts. */
interface Watch<T> {
  entries: Set<Entry<T>>;
  onAbort: () => void;
}

export class OrderedBatcher<T> {
  private readonly queues = new Map<string, Entry<T>[]>();
  private open: Entry<T>[] = [];
  private openBytes = 0;
  private readonly ready: Entry<T>[][] = [];
  private lingerTimer?: NodeJS.Timeout;
  private lingerExpired = false;
  private inFlight = 0;
  private readonly calls = new Set<Promise<void>>();
  private pendingCount = 0;
  private closed = false;
  /**
   * One 'abort' listener per signal, not per entry: a connection's signal is shared by every delivery in
   * flight on it (thousands), and EventTarget's add/removeEventListener are linear in its listeners.
   */
  private readonly watches = new Map<AbortSignal, Watch<T>>();
  /** Keys whose head a source (signal) gave up: that source's later messages of the key come back after it. */
  private readonly gaps = new WeakMap<AbortSignal, Set<string>>();

  constructor(
    private readonly options: OrderedBatcherOptions,
    private readonly send: SendBatch<T>,
    private readonly hooks: OrderedBatcherHooks = {},
  ) {}

  /** Items submitted and not final yet. */
  get pending(): number {
    return this.pendingCount;
  }

  /** Calls in flight. */
  get activeCalls(): number {
    return this.inFlight;
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
      const entry: Entry<T> = {
        key,
        item,
        bytes,
        signal,
        resolve,
        reject,
        state: 'waiting',
        position: 0,
        attempts: 0,
      };
      let queue = this.queues.get(key);
      if (!queue) this.queues.set(key, (queue = []));
      queue.push(entry);
      this.pendingCount++;
      if (signal) this.watch(signal, entry);
      if (queue.length === 1) this.schedule(entry);
      else this.join(queue[queue.length - 2], entry);
    });
  }

  /** Stops: gives up everything not in a call now, and waits for the calls in flight. */
  async close(): Promise<void> {
    this.closed = true;
    for (const queue of [...this.queues.values()]) {
      for (const entry of [...queue]) if (entry.state !== 'sending') this.abandon(entry, 'closed');
    }
    await Promise.allSettled([...this.calls]);
  }

  /** Puts the head of a key into the open batch, with the key's messages waiting behind it as far as they fit. */
  private schedule(head: Entry<T>): void {
    if (this.closed) return this.abandon(head, 'closed');
    if (head.signal?.aborted) return this.abandon(head, 'aborted');
    const { maxBatchBytes, maxPerKey } = this.options;
    if (this.open.length > 0 && this.openBytes + head.bytes > maxBatchBytes) this.closeOpen();
    const wasEmpty = this.open.length === 0;
    this.enqueue(head, 0);
    const queue = this.queues.get(head.key)!;
    for (let i = 1; i < queue.length && i < maxPerKey; i++) {
      const next = queue[i];
      if (next.state !== 'waiting' || !this.fits(next)) break;
      this.enqueue(next, i);
    }
    this.afterEnqueue(wasEmpty);
  }

  /** A key's new message joins its predecessor's batch while that is still open and has room for the key. */
  private join(previous: Entry<T>, entry: Entry<T>): void {
    if (previous.state !== 'queued' || previous.batch !== this.open) return;
    if (previous.position + 1 >= this.options.maxPerKey || !this.fits(entry)) return;
    this.enqueue(entry, previous.position + 1);
    this.afterEnqueue(false);
  }

  private fits(entry: Entry<T>): boolean {
    return (
      this.open.length < this.options.maxBatchSize &&
      this.openBytes + entry.bytes <= this.options.maxBatchBytes
    );
  }

  private enqueue(entry: Entry<T>, position: number): void {
    entry.state = 'queued';
    entry.batch = this.open;
    entry.position = position;
    entry.firstAttemptAt ??= Date.now();
    this.open.push(entry);
    this.openBytes += entry.bytes;
  }

  /** Closes a full batch, or starts the linger of a new one; then sends what can go. */
  private afterEnqueue(wasEmpty: boolean): void {
    const { lingerMs } = this.options;
    if (this.open.length >= this.options.maxBatchSize) this.closeOpen();
    else if (wasEmpty) {
      if (lingerMs === 0) this.lingerExpired = true;
      else {
        this.lingerTimer = setTimeout(() => {
          this.lingerTimer = undefined;
          this.lingerExpired = true;
          this.pump();
        }, lingerMs);
      }
    }
    this.pump();
  }

  private closeOpen(): void {
    if (this.open.length === 0) return;
    this.ready.push(this.open);
    this.open = [];
    this.openBytes = 0;
    this.lingerExpired = false;
    if (this.lingerTimer) clearTimeout(this.lingerTimer);
    this.lingerTimer = undefined;
  }

  private pump(): void {
    while (this.inFlight < this.options.maxConcurrentBatches) {
      if (this.ready.length === 0 && this.lingerExpired) this.closeOpen();
      const batch = this.ready.shift();
      if (!batch) return;
      const live = batch.filter((entry) => {
        if (entry.state !== 'queued') return false;
        if (!entry.signal?.aborted) return true;
        this.abandon(entry, 'aborted');
        return false;
      });
      if (live.length === 0) continue;
      const call = this.sendBatch(live);
      this.calls.add(call);
      void call.finally(() => this.calls.delete(call));
    }
  }

  private async sendBatch(batch: Entry<T>[]): Promise<void> {
    this.inFlight++;
    for (const entry of batch) {
      entry.state = 'sending';
      entry.attempts++;
    }
    const started = performance.now();
    let outcomes: readonly (HandOffOutcome | undefined)[] = [];
    let failure: unknown;
    try {
      outcomes = await this.send(batch.map((entry) => entry.item));
    } catch (error) {
      failure = error;
    }
    this.inFlight--;
    this.hooks.onBatchDone?.(batch.length, (performance.now() - started) / 1000, failure);
    batch.forEach((entry, i) => {
      // Given up with the key's head before it (the head's deadline): it comes back after the head.
      if (entry.state === 'done') return;
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
        this.retry(entry, reason);
      }
    });
    this.pump();
  }

  private retry(entry: Entry<T>, reason: string): void {
    entry.lastError = reason;
    this.hooks.onRetry?.(reason);
    if (this.closed) return this.abandon(entry, 'closed');
    if (entry.signal?.aborted) return this.abandon(entry, 'aborted');
    if (this.queues.get(entry.key)![0] !== entry) {
      // Behind its key's head, which retried or is final already: it goes again with the key's next batch.
      entry.state = 'waiting';
      return;
    }
    const { baseMs, maxBackoffMs, deadlineMs } = this.options.retry;
    const delay = backoffDelay(entry.attempts, { baseMs, maxMs: maxBackoffMs, jitter: 0.5 });
    if (Date.now() + delay - entry.firstAttemptAt! > deadlineMs) return this.abandon(entry, 'deadline');
    entry.state = 'backoff';
    entry.timer = setTimeout(() => {
      entry.timer = undefined;
      this.schedule(entry);
    }, delay);
  }

  private watch(signal: AbortSignal, entry: Entry<T>): void {
    let watch = this.watches.get(signal);
    if (!watch) {
      const entries = new Set<Entry<T>>();
      const onAbort = () => {
        this.watches.delete(signal);
        for (const aborted of [...entries]) this.onAbort(aborted);
      };
      watch = { entries, onAbort };
      this.watches.set(signal, watch);
      signal.addEventListener('abort', onAbort, { once: true });
    }
    watch.entries.add(entry);
  }

  private unwatch(entry: Entry<T>): void {
    const watch = entry.signal && this.watches.get(entry.signal);
    if (!watch) return;
    watch.entries.delete(entry);
    if (watch.entries.size > 0) return;
    this.watches.delete(entry.signal);
    entry.signal.removeEventListener('abort', watch.onAbort);
  }

  private onAbort(entry: Entry<T>): void {
    // In a call: its answer still counts. Queued in a batch: dropped when the batch is sent.
    if (entry.state === 'waiting' || entry.state === 'backoff') this.abandon(entry, 'aborted');
  }

  private finish(entry: Entry<T>, outcome: FinalOutcome): void {
    if (this.settle(entry)) entry.resolve(outcome);
  }

  private abandon(entry: Entry<T>, reason: AbandonReason): void {
    // A gap in a key's sequence: what came after it from the same source must not overtake it.
    if (reason !== 'aborted' && this.queues.get(entry.key)?.[0] === entry) {
      for (const behind of [...this.queues.get(entry.key)!].slice(1)) {
        if (behind.signal === entry.signal) this.abandon(behind, 'behind-abandoned');
      }
      if (entry.signal) {
        let keys = this.gaps.get(entry.signal);
        if (!keys) this.gaps.set(entry.signal, (keys = new Set()));
        keys.add(entry.key);
      }
    }
    if (!this.settle(entry)) return;
    this.hooks.onAbandon?.(reason);
    entry.reject(new HandOffAbandonedError(reason, entry.attempts, entry.lastError));
  }

  /** Marks an entry final and lets the next of its key in. False when it already was final. */
  private settle(entry: Entry<T>): boolean {
    if (entry.state === 'done') return false;
    entry.state = 'done';
    this.pendingCount--;
    if (entry.timer) clearTimeout(entry.timer);
    this.unwatch(entry);
    const queue = this.queues.get(entry.key)!;
    const index = queue.indexOf(entry);
    queue.splice(index, 1);
    if (queue.length === 0) this.queues.delete(entry.key);
    // The next head waits while it is still in a batch with this one.
    else if (index === 0 && queue[0].state === 'waiting') this.schedule(queue[0]);
    return true;
  }
}
