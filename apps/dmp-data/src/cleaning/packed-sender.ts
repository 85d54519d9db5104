import { DmpError } from '@dmp/contracts';
import { Batcher, splitRefused } from '@dmp/flow';

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
 * refused for good (not retryable) is bisected until the culprits are alone, so one bad item cannot take
 * its neighbours with it. The wait queue needs no bound of its own: each item is a handler awaiting it,
 * and the consumer bounds its messages in flight. Packing and the window are the project's one batching
 * core (`@dmp/flow`): count + bytes + `maxConcurrentSends`, no linger, no groups.
 */
export class PackedSender<T> {
  private readonly batcher: Batcher<Pending<T>>;

  constructor(
    options: PackedSenderOptions,
    private readonly hooks: PackedSenderHooks<T>,
  ) {
    this.batcher = new Batcher<Pending<T>>(
      { maxItems: options.maxItems, maxBytes: options.maxBytes, maxInFlight: options.maxConcurrentSends },
      { sizeOf: (p) => p.size, run: (batch) => this.run(batch) },
    );
  }

  /** Items waiting for a send. */
  get queued(): number {
    return this.batcher.waiting;
  }

  /** Sends in flight. */
  get sendsInFlight(): number {
    return this.batcher.packsInFlight;
  }

  add(item: T): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      this.batcher.add({ item, size: this.hooks.sizeOf(item), resolve, reject });
    });
  }

  /** Not awaited: the slot frees as soon as the batch's items are settled. */
  private run(batch: Pending<T>[]): Promise<void> {
    return this.send(batch).then(
      () => {
        for (const pending of batch) pending.resolve();
      },
      (error: unknown) => this.failed(batch, error),
    );
  }

  private send(part: readonly Pending<T>[]): Promise<void> {
    try {
      return this.hooks.send(part.map((p) => p.item));
    } catch (error) {
      return Promise.reject(error instanceof Error ? error : new Error(String(error)));
    }
  }

  /** A batch refused for good is bisected until the culprits are alone; anything else fails the batch. */
  private async failed(batch: Pending<T>[], error: unknown): Promise<void> {
    const isRefusal = (e: unknown) => e instanceof DmpError && !e.retryable;
    if (batch.length === 1 || !isRefusal(error)) {
      for (const pending of batch) pending.reject(error);
      return;
    }
    const half = Math.ceil(batch.length / 2);
    const send = (part: readonly Pending<T>[]) => this.send(part);
    const failures = [
      ...(await splitRefused(batch.slice(0, half), send, isRefusal)),
      ...(await splitRefused(batch.slice(half), send, isRefusal)),
    ];
    const rejected = new Map<Pending<T>, unknown>();
    for (const part of failures) for (const pending of part.items) rejected.set(pending, part.error);
    for (const pending of batch)
      if (rejected.has(pending)) pending.reject(rejected.get(pending));
      else pending.resolve();
  }
}
