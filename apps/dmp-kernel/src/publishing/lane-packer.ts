import { AbortWatch, Batcher } from '@dmp/flow';

export interface LanePackerOptions {
  /** Items per send at most… */
  maxItems: number;
  /** …and bytes (as the caller counts them), unless a single item is larger. */
  maxBytes: number;
  /**
   * How long a pack that is not full waits for more items after its first one arrived (0: it goes
   * with the lane's next send at once).
   */
  lingerMs?: number;
  /**
   * A lane is full once this many items wait for its next send… (see {@link LanePacker.isFull}; none
   * by default).
   */
  maxWaitingItems?: number;
  /** …or this many bytes. */
  maxWaitingBytes?: number;
}

/** Sends one lane's pack; resolves once it is stored, throws to fail every item of the pack. */
export type SendPack<T> = (lane: string, items: readonly T[]) => Promise<void>;

/** Not sent: an earlier item of the same key failed in its lane (`cause`: that failure). */
export class PrecedingItemFailedError extends Error {
  constructor(cause: unknown) {
    super('not sent: an earlier item of the same key failed', { cause });
  }
}

/** Not sent: the caller's signal aborted while the item waited for its lane (`cause`: its reason). */
export class ItemCancelledError extends Error {
  constructor(cause: unknown) {
    super('not sent: cancelled while it waited for its lane', { cause });
  }
}

interface Pending<T> {
  lane: string;
  key: string;
  signal?: AbortSignal;
  item: T;
  size: number;
  resolve: () => void;
  reject: (error: unknown) => void;
}

/**
 * Packs items per lane. Each lane has at most one send in flight, and what arrives meanwhile goes,
 * packed, with the lane's next send — under load a pack carries everything that arrived during one
 * round trip, so packs grow with the load. A pack also waits up to `lingerMs` after its first item
 * unless it fills: without it, a lane whose sends are quick sends nearly every item alone, and every
 * RocketMQ send, receive and ack costs about the same whatever it carries. Items added in one turn
 * of the event loop (one Ingest batch) start in one pack. One send per lane at a time keeps a lane's
 * packs in the order their items arrived. An item resolves when its pack is stored and rejects with
 * its pack's error; the items of the failed pack's keys still waiting in the lane then reject too
 * ({@link PrecedingItemFailedError}), so a key's items are stored in order or not after a failure, and
 * a caller may add a key's items at once instead of one after the other. The queueing is the per-key
 * FIFO of `@dmp/flow` with the lane as its key: here are only the lane's rules for failures and aborts.
 *
 * Bounds and cancellation. The packer itself refuses nothing: a caller asks {@link isFull} before it
 * adds (the Ingest call does, for every lane of its batch, in the turn it adds them), so a lane holds at
 * most its bound plus one caller's items. An item added with a signal that aborts while it still waits
 * is dropped ({@link ItemCancelledError}), and its key's items behind it in the lane with it
 * (PrecedingItemFailedError), keeping the key's order; once its pack's send started, it is sent.
 *
 * Part of the per-device order invariant: see docs/engineering.md, "Per-device order".
 */
export class LanePacker<T> {
  private readonly fifo: Batcher<Pending<T>>;
  private readonly maxWaitingItems: number;
  private readonly maxWaitingBytes: number;
  private readonly aborts = new AbortWatch<Pending<T>>((signal, items) => this.cancel(signal, items));

  constructor(
    options: LanePackerOptions,
    private readonly send: SendPack<T>,
  ) {
    this.maxWaitingItems = options.maxWaitingItems ?? Infinity;
    this.maxWaitingBytes = options.maxWaitingBytes ?? Infinity;
    this.fifo = new Batcher<Pending<T>>(
      {
        maxItems: options.maxItems,
        maxBytes: options.maxBytes,
        lingerMs: Math.max(0, options.lingerMs ?? 0),
      },
      {
        keyOf: (p) => p.lane,
        groupOf: (p) => p.lane,
        sizeOf: (p) => p.size,
        run: (pack) => this.sendPack(pack),
      },
    );
  }

  /** Items waiting for their lane's next send. */
  get waiting(): number {
    return this.fifo.waiting;
  }

  /** Bytes of the items waiting for their lane's next send. */
  get waitingBytes(): number {
    return this.fifo.waitingBytes;
  }

  /** Items in sends in flight. */
  get sending(): number {
    return this.fifo.inFlight;
  }

  /** What waits in a lane (nothing for a lane not in use). */
  laneWaiting(lane: string): { items: number; bytes: number } {
    return this.fifo.waitingOf(lane);
  }

  /** Whether a lane's waiting items reached `maxWaitingItems` or `maxWaitingBytes`. */
  isFull(lane: string): boolean {
    const { items, bytes } = this.laneWaiting(lane);
    return items >= this.maxWaitingItems || bytes >= this.maxWaitingBytes;
  }

  /**
   * `key`: items of one key (a device) are stored in the order added, and none after one failed.
   * `signal`: the item is dropped while it waits once it aborts (and not added if it already did).
   */
  add(lane: string, key: string, item: T, size: number, signal?: AbortSignal): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      if (signal?.aborted) {
        reject(new ItemCancelledError(signal.reason));
        return;
      }
      const pending: Pending<T> = { lane, key, signal, item, size, resolve, reject };
      if (signal) this.aborts.add(signal, pending);
      this.fifo.add(pending);
    });
  }

  private async sendPack(pack: Pending<T>[]): Promise<void> {
    // Taken: from here on the items are sent, whatever their signals do.
    for (const p of pack) this.aborts.delete(p.signal, p);
    const lane = pack[0].lane;
    try {
      await this.send(
        lane,
        pack.map((p) => p.item),
      );
      for (const p of pack) p.resolve();
    } catch (error) {
      for (const p of pack) p.reject(error);
      // Still in the send's turn of the lane: nothing behind has been taken yet.
      const keys = new Set(pack.map((p) => p.key));
      this.drop(
        lane,
        (p) => keys.has(p.key),
        () => new PrecedingItemFailedError(error),
      );
    }
  }

  /**
   * Drops the items of an aborted signal that still wait, and their keys' items behind them in
   * their lanes.
   */
  private cancel(signal: AbortSignal, items: ReadonlySet<Pending<T>>): void {
    const cancelled = new ItemCancelledError(signal.reason);
    for (const lane of new Set([...items].map((p) => p.lane))) {
      const keys = new Set<string>();
      this.drop(
        lane,
        (p) => {
          if (p.signal === signal) keys.add(p.key);
          return keys.has(p.key);
        },
        (p) => (p.signal === signal ? cancelled : new PrecedingItemFailedError(cancelled)),
      );
    }
  }

  /** Takes the waiting items `pick` chooses (in lane order) out of their lane and rejects them. */
  private drop(lane: string, pick: (p: Pending<T>) => boolean, error: (p: Pending<T>) => unknown): void {
    for (const p of this.fifo.remove(lane, pick)) {
      this.aborts.delete(p.signal, p);
      p.reject(error(p));
    }
  }
}
