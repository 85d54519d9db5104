import { DmpError } from '@dmp/contracts';

export interface PackedSenderOptions {
  /** Items per send at most… */
  maxItems: number;
  /** …and bytes (as `sizeOf` counts them) per send, unless a single item is larger. */
  maxBytes: number;
  /** Sends in flight at once; items arriving meanwhile are packed into the next sends. */
  maxConcurrentSends: number;
}

export interface PackedSenderHooks<T> {
  sizeOf: (item: T) => number;
  /** Stores the items or throws; a DmpError that is not retryable means "never", anything else "not now". */
  send: (items: readonly T[]) => Promise<void>;
}

interface Pending<T> {
  item: T;
  size: number;
  resolve: () => void;
  reject: (error: unknown) => void;
}

/**
 * Packs concurrent hand-offs into few sends: at most `maxConcurrentSends` are in flight, and what
 * arrives while they are busy waits and goes with the next free one, up to `maxItems` / `maxBytes`. No
 * linger: a lone item is sent at once. `add` resolves once its send succeeded and rejects with the
 * send's error otherwise — no retry here: the caller's message is redelivered by its broker. A batch
 * refused for good (not retryable) is split, each item tried alone, so one bad item cannot take its
 * neighbours with it. The wait queue needs no bound of its own: each item is a handler awaiting it, and
 * the consumer bounds its messages in flight.
 */
export class PackedSender<T> {
  private readonly queue: Pending<T>[] = [];
  private sends = 0;

  constructor(
    private readonly options: PackedSenderOptions,
    private readonly hooks: PackedSenderHooks<T>,
  ) {}

  /** Items waiting for a send. */
  get queued(): number {
    return this.queue.length;
  }

  /** Sends in flight. */
  get sendsInFlight(): number {
    return this.sends;
  }

  add(item: T): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      this.queue.push({ item, size: this.hooks.sizeOf(item), resolve, reject });
      this.pump();
    });
  }

  private pump(): void {
    while (this.sends < this.options.maxConcurrentSends && this.queue.length > 0) {
      const batch = this.take();
      this.sends++;
      void this.run(batch).finally(() => {
        this.sends--;
        this.pump();
      });
    }
  }

  /** The oldest items that fit one send (at least one). */
  private take(): Pending<T>[] {
    let bytes = 0;
    let count = 0;
    for (const pending of this.queue) {
      if (count > 0 && (count >= this.options.maxItems || bytes + pending.size > this.options.maxBytes))
        break;
      bytes += pending.size;
      count++;
    }
    return this.queue.splice(0, count);
  }

  private async run(batch: Pending<T>[]): Promise<void> {
    try {
      await this.hooks.send(batch.map((p) => p.item));
    } catch (error) {
      if (batch.length > 1 && error instanceof DmpError && !error.retryable) {
        for (const pending of batch) await this.run([pending]);
        return;
      }
      for (const pending of batch) pending.reject(error);
      return;
    }
    for (const pending of batch) pending.resolve();
  }
}
