import { DmpError } from '@dmp/contracts';
import { backoffDelay, Batcher, splitRefused } from '@dmp/flow';
import { setTimeout as sleep } from 'node:timers/promises';

/** How a dead-letter hand-off ended. */
export type DeadLetterOutcome =
  /** Stored in RocketMQ: the message may be acknowledged. */
  | 'sent'
  /** RocketMQ refuses this message for good (e.g. too large): acknowledged anyway, logged with the details. */
  | 'refused'
  /** The delivery can no longer be acknowledged (connection lost, shutdown): the broker redelivers it. */
  | 'aborted';

export interface DeadLetterBatcherOptions {
  /** Items per send at most… */
  maxItems: number;
  /** …and bytes (as `sizeOf` counts them) per send, unless a single item is larger. */
  maxBytes: number;
  /** Sends in flight at once; items arriving meanwhile are packed into the next sends. */
  maxConcurrentSends: number;
  /**
   * Backoff of a send that failed transiently (`backoffDelay`): first delay, doubling up to `maxMs`,
   * each up to 20 % shorter at random.
   */
  retry: { baseMs: number; maxMs: number };
}

export interface DeadLetterBatcherHooks<T> {
  /** Items only of the same group travel in one send (dmp-mqtt: the reason code, the message's tag). */
  groupOf: (item: T) => string;
  sizeOf: (item: T) => number;
  /** Stores the items or throws; a DmpError that is not retryable means "never", anything else "not now". */
  send: (items: readonly T[]) => Promise<void>;
  onSent?: (items: readonly T[], waitedMs: number) => void;
  onRetry?: (error: unknown, attempt: number, items: readonly T[], delayMs: number) => void;
  onRefused?: (error: unknown, item: T) => void;
}

interface Pending<T> {
  item: T;
  size: number;
  signal: AbortSignal;
  enqueuedAt: number;
  settled: boolean;
  resolve: (outcome: DeadLetterOutcome) => void;
}

/**
 * The dead-letter path of refused messages, bounded and packed. At most `maxConcurrentSends` sends are
 * in flight; what arrives while they are busy waits, packed by group into sends of up to `maxItems` /
 * `maxBytes`, and goes with the next free send — so under light load each item goes at once (no linger),
 * and under a flood one round trip carries hundreds of items instead of hundreds of round trips
 * competing for the connection. The wait queue needs no bound of its own: every item is an
 * unacknowledged MQTT message, and the transport stops reading at Receive Maximum of those.
 *
 * An item resolves once it is stored (`sent`), refused for good (`refused`: a batch refused for good is
 * bisected until the culprits are alone, so one bad item cannot take its neighbours with it), or when its
 * delivery's signal aborts before that (`aborted`: it is left to the broker's redelivery). Transient
 * failures are retried with backoff, without the items aborted meanwhile. Nothing is dropped.
 * Packing and the send window are the project's one batching core (`@dmp/flow`): count + bytes + group
 * (the reason code) + `maxConcurrentSends`, no linger.
 */
export class DeadLetterBatcher<T> {
  private readonly batcher: Batcher<Pending<T>>;
  private readonly closing = new AbortController();

  constructor(
    private readonly options: DeadLetterBatcherOptions,
    private readonly hooks: DeadLetterBatcherHooks<T>,
  ) {
    this.batcher = new Batcher<Pending<T>>(
      { maxItems: options.maxItems, maxBytes: options.maxBytes, maxInFlight: options.maxConcurrentSends },
      { groupOf: (p) => hooks.groupOf(p.item), sizeOf: (p) => p.size, run: (batch) => this.run(batch) },
    );
  }

  /** Items waiting for a send. */
  get queued(): number {
    return this.batcher.waiting;
  }

  /** Items in sends in flight (including sends waiting to retry). */
  get inFlight(): number {
    return this.batcher.inFlight;
  }

  /** Sends in flight (including those waiting to retry). */
  get sendsInFlight(): number {
    return this.batcher.packsInFlight;
  }

  add(item: T, signal: AbortSignal): Promise<DeadLetterOutcome> {
    if (signal.aborted || this.closing.signal.aborted) return Promise.resolve('aborted');
    return new Promise<DeadLetterOutcome>((resolve) => {
      this.batcher.add({
        item,
        size: this.hooks.sizeOf(item),
        signal,
        enqueuedAt: performance.now(),
        settled: false,
        resolve,
      });
    });
  }

  /** On shutdown (after the transport drained): waiting and retrying items end as `aborted`. */
  close(): void {
    this.closing.abort();
    for (const pending of this.batcher.close()) this.settle(pending, 'aborted');
  }

  /** One send slot: the batch until each of its items is settled. */
  private run(batch: Pending<T>[]): Promise<void> {
    // Returned as is (no await): the slot frees as soon as the last item settles.
    return this.sendWithRetry(batch, true);
  }

  /**
   * Sends the part's live items, retrying transient failures with backoff. Refused for good: the whole
   * batch is bisected (`splitRefused`) until the culprits are alone, a part of it throws the refusal.
   */
  private async sendWithRetry(part: readonly Pending<T>[], whole = false): Promise<void> {
    for (let attempt = 1; ; attempt++) {
      const live = this.live(part);
      if (live.length === 0) return;
      const items = live.map((p) => p.item);
      try {
        await this.hooks.send(items);
        const now = performance.now();
        this.hooks.onSent?.(items, now - Math.min(...live.map((p) => p.enqueuedAt)));
        for (const pending of live) this.settle(pending, 'sent');
        return;
      } catch (error) {
        if (error instanceof DmpError && !error.retryable) {
          if (!whole) throw error;
          return this.isolate(live, error);
        }
        const delay = backoffDelay(attempt, { ...this.options.retry, jitter: 0.2 });
        this.hooks.onRetry?.(error, attempt, items, delay);
        // Wakes early when a delivery ends (its items drop out) or on shutdown.
        const signals = new Set([this.closing.signal, ...live.map((p) => p.signal)]);
        await sleep(delay, undefined, { signal: AbortSignal.any([...signals]) }).catch(() => undefined);
      }
    }
  }

  /** Finds the culprits of a refused batch: only they are `refused`, their neighbours are sent. */
  private async isolate(live: Pending<T>[], error: unknown): Promise<void> {
    const half = Math.ceil(live.length / 2);
    const isRefusal = (e: unknown) => e instanceof DmpError && !e.retryable;
    const send = (part: readonly Pending<T>[]) => this.sendWithRetry(part);
    const failed =
      live.length === 1
        ? [{ items: live, error, refused: true }]
        : [
            ...(await splitRefused(live.slice(0, half), send, isRefusal)),
            ...(await splitRefused(live.slice(half), send, isRefusal)),
          ];
    for (const part of failed)
      for (const pending of part.items) {
        if (part.refused && !pending.settled) this.hooks.onRefused?.(part.error, pending.item);
        // Not refused: only a throwing hook gets here; the broker redelivers the message.
        this.settle(pending, part.refused ? 'refused' : 'aborted');
      }
  }

  /** The part's items still to send; those whose delivery ended (or all, on shutdown) are settled `aborted`. */
  private live(part: readonly Pending<T>[]): Pending<T>[] {
    const live: Pending<T>[] = [];
    for (const pending of part) {
      if (pending.settled) continue;
      if (pending.signal.aborted || this.closing.signal.aborted) this.settle(pending, 'aborted');
      else live.push(pending);
    }
    return live;
  }

  private settle(pending: Pending<T>, outcome: DeadLetterOutcome): void {
    if (pending.settled) return;
    pending.settled = true;
    pending.resolve(outcome);
  }
}
