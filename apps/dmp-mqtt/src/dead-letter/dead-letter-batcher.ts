import { DmpError, backoffDelay } from '@dmp/contracts';
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

interface Open<T> {
  items: Pending<T>[];
  bytes: number;
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
 * split and each item tried alone, so one bad item cannot take its neighbours with it), or when its
 * delivery's signal aborts before that (`aborted`: it is left to the broker's redelivery). Transient
 * failures are retried with backoff, without the items aborted meanwhile. Nothing is dropped.
 */
export class DeadLetterBatcher<T> {
  private readonly open = new Map<string, Open<T>>();
  private readonly ready: Pending<T>[][] = [];
  private queuedItems = 0;
  private sendingItems = 0;
  private sends = 0;
  private readonly closing = new AbortController();

  constructor(
    private readonly options: DeadLetterBatcherOptions,
    private readonly hooks: DeadLetterBatcherHooks<T>,
  ) {}

  /** Items waiting for a send. */
  get queued(): number {
    return this.queuedItems;
  }

  /** Items in sends in flight (including sends waiting to retry). */
  get inFlight(): number {
    return this.sendingItems;
  }

  /** Sends in flight (including those waiting to retry). */
  get sendsInFlight(): number {
    return this.sends;
  }

  add(item: T, signal: AbortSignal): Promise<DeadLetterOutcome> {
    if (signal.aborted || this.closing.signal.aborted) return Promise.resolve('aborted');
    return new Promise<DeadLetterOutcome>((resolve) => {
      const pending: Pending<T> = {
        item,
        size: this.hooks.sizeOf(item),
        signal,
        enqueuedAt: performance.now(),
        settled: false,
        resolve,
      };
      this.queuedItems++;
      const group = this.hooks.groupOf(item);
      let open = this.open.get(group);
      if (open && open.bytes + pending.size > this.options.maxBytes) {
        this.seal(group, open);
        open = undefined;
      }
      if (!open) {
        open = { items: [], bytes: 0 };
        this.open.set(group, open);
      }
      open.items.push(pending);
      open.bytes += pending.size;
      if (open.items.length >= this.options.maxItems || open.bytes >= this.options.maxBytes)
        this.seal(group, open);
      this.pump();
    });
  }

  /** On shutdown (after the transport drained): waiting and retrying items end as `aborted`. */
  close(): void {
    this.closing.abort();
    for (const [group, open] of this.open) this.seal(group, open);
    for (const batch of this.ready.splice(0)) {
      this.queuedItems -= batch.length;
      for (const pending of batch) this.settle(pending, 'aborted');
    }
  }

  /** A full open batch waits for the next free send. */
  private seal(group: string, open: Open<T>): void {
    this.open.delete(group);
    this.ready.push(open.items);
  }

  /** Starts sends while there is room: full batches first, then the oldest open one. */
  private pump(): void {
    while (this.sends < this.options.maxConcurrentSends && !this.closing.signal.aborted) {
      let batch = this.ready.shift();
      if (!batch) {
        const oldest = this.open.entries().next();
        if (oldest.done) return;
        const [group, open] = oldest.value;
        this.open.delete(group);
        batch = open.items;
      }
      this.queuedItems -= batch.length;
      this.sendingItems += batch.length;
      this.sends++;
      void this.run(batch).finally(() => {
        this.sends--;
        this.sendingItems -= batch.length;
        this.pump();
      });
    }
  }

  /** One send slot: the batch until each of its items is settled. */
  private async run(batch: Pending<T>[]): Promise<void> {
    for (let attempt = 1; ; attempt++) {
      const live = this.live(batch);
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
          if (live.length > 1) {
            // Find the culprit(s): each item alone, in this slot.
            for (const pending of live) await this.run([pending]);
            return;
          }
          this.hooks.onRefused?.(error, live[0].item);
          this.settle(live[0], 'refused');
          return;
        }
        const delay = backoffDelay(attempt, { ...this.options.retry, jitter: 0.2 });
        this.hooks.onRetry?.(error, attempt, items, delay);
        // Wakes early when a delivery ends (its items drop out) or on shutdown.
        const signals = new Set([this.closing.signal, ...live.map((p) => p.signal)]);
        await sleep(delay, undefined, { signal: AbortSignal.any([...signals]) }).catch(() => undefined);
      }
    }
  }

  /** The batch's items still to send; those whose delivery ended (or all, on shutdown) are settled `aborted`. */
  private live(batch: Pending<T>[]): Pending<T>[] {
    const live: Pending<T>[] = [];
    for (const pending of batch) {
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
