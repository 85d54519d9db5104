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
  addedAt: number;
  resolve: () => void;
  reject: (error: unknown) => void;
}

interface Lane<T> {
  waiting: Pending<T>[];
  waitingBytes: number;
  sending: boolean;
  /** Armed while the first waiting item lingers. */
  timer?: NodeJS.Timeout;
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
 * a caller may add a key's items at once instead of one after the other.
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
  private readonly lanes = new Map<string, Lane<T>>();
  private waitingItems = 0;
  private waitingByteCount = 0;
  private sendingItems = 0;
  private readonly lingerMs: number;
  private readonly maxWaitingItems: number;
  private readonly maxWaitingBytes: number;
  /**
   * One 'abort' listener per signal, not per item: an Ingest call's signal is shared by its whole
   * batch (thousands), and EventTarget's add/removeEventListener are linear in its listeners.
   */
  private readonly watches = new Map<AbortSignal, { items: Set<Pending<T>>; onAbort: () => void }>();

  constructor(
    private readonly options: LanePackerOptions,
    private readonly send: SendPack<T>,
  ) {
    this.lingerMs = Math.max(0, options.lingerMs ?? 0);
    this.maxWaitingItems = options.maxWaitingItems ?? Infinity;
    this.maxWaitingBytes = options.maxWaitingBytes ?? Infinity;
  }

  /** Items waiting for their lane's next send. */
  get waiting(): number {
    return this.waitingItems;
  }

  /** Bytes of the items waiting for their lane's next send. */
  get waitingBytes(): number {
    return this.waitingByteCount;
  }

  /** Items in sends in flight. */
  get sending(): number {
    return this.sendingItems;
  }

  /** What waits in a lane (nothing for a lane not in use). */
  laneWaiting(lane: string): { items: number; bytes: number } {
    const state = this.lanes.get(lane);
    return { items: state?.waiting.length ?? 0, bytes: state?.waitingBytes ?? 0 };
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
      let state = this.lanes.get(lane);
      if (!state) {
        state = { waiting: [], waitingBytes: 0, sending: false };
        this.lanes.set(lane, state);
      }
      const pending: Pending<T> = {
        lane,
        key,
        signal,
        item,
        size,
        addedAt: this.lingerMs > 0 ? Date.now() : 0,
        resolve,
        reject,
      };
      state.waiting.push(pending);
      state.waitingBytes += size;
      this.waitingItems++;
      this.waitingByteCount += size;
      if (signal) this.watch(signal, pending);
      this.schedule(lane, state);
    });
  }

  /** Starts the lane's next send once nothing is in flight and its pack is full or has lingered. */
  private schedule(name: string, lane: Lane<T>): void {
    if (lane.sending || lane.waiting.length === 0) return;
    const wait = this.lingerLeft(lane);
    if (wait > 0) {
      lane.timer ??= setTimeout(() => {
        lane.timer = undefined;
        this.schedule(name, lane);
      }, wait);
      return;
    }
    clearTimeout(lane.timer);
    lane.timer = undefined;
    lane.sending = true;
    // setImmediate: the rest of this turn's items join the pack.
    setImmediate(() => void this.sendNext(name, lane));
  }

  /** How long the lane's pack may still wait for more items (0: send now). */
  private lingerLeft(lane: Lane<T>): number {
    if (this.lingerMs === 0) return 0;
    const full = lane.waiting.length >= this.options.maxItems || lane.waitingBytes >= this.options.maxBytes;
    return full ? 0 : lane.waiting[0].addedAt + this.lingerMs - Date.now();
  }

  private async sendNext(name: string, lane: Lane<T>): Promise<void> {
    // Taken: from here on the items are sent, whatever their signals do.
    const pack = this.take(lane);
    this.sendingItems += pack.length;
    try {
      // Empty when every item waiting was cancelled meanwhile.
      if (pack.length > 0)
        await this.send(
          name,
          pack.map((p) => p.item),
        );
      for (const p of pack) p.resolve();
    } catch (error) {
      for (const p of pack) p.reject(error);
      this.failBehind(lane, new Set(pack.map((p) => p.key)), error);
    } finally {
      this.sendingItems -= pack.length;
      lane.sending = false;
    }
    if (lane.waiting.length === 0) this.lanes.delete(name);
    else this.schedule(name, lane);
  }

  /** Rejects the waiting items of the keys whose items just failed. */
  private failBehind(lane: Lane<T>, keys: ReadonlySet<string>, error: unknown): void {
    lane.waiting = lane.waiting.filter((p) => {
      if (!keys.has(p.key)) return true;
      this.drop(lane, p, new PrecedingItemFailedError(error));
      return false;
    });
  }

  /**
   * Drops the items of an aborted signal that still wait, and their keys' items behind them in
   * their lanes.
   */
  private cancel(signal: AbortSignal, items: ReadonlySet<Pending<T>>): void {
    const error = new ItemCancelledError(signal.reason);
    for (const name of new Set([...items].map((p) => p.lane))) {
      const lane = this.lanes.get(name);
      if (!lane) continue;
      const cancelledKeys = new Set<string>();
      lane.waiting = lane.waiting.filter((p) => {
        if (p.signal === signal) {
          cancelledKeys.add(p.key);
          this.drop(lane, p, error);
          return false;
        }
        if (!cancelledKeys.has(p.key)) return true;
        this.drop(lane, p, new PrecedingItemFailedError(error));
        return false;
      });
      if (lane.waiting.length === 0 && !lane.sending) {
        clearTimeout(lane.timer);
        this.lanes.delete(name);
      }
    }
  }

  /** Takes a waiting item out of the counts (the caller removes it from `lane.waiting`) and rejects it. */
  private drop(lane: Lane<T>, p: Pending<T>, error: unknown): void {
    lane.waitingBytes -= p.size;
    this.waitingItems--;
    this.waitingByteCount -= p.size;
    this.unwatch(p);
    p.reject(error);
  }

  private take(lane: Lane<T>): Pending<T>[] {
    let count = 0;
    let bytes = 0;
    for (const p of lane.waiting) {
      if (count >= this.options.maxItems || (count > 0 && bytes + p.size > this.options.maxBytes)) break;
      count++;
      bytes += p.size;
    }
    lane.waitingBytes -= bytes;
    this.waitingItems -= count;
    this.waitingByteCount -= bytes;
    const pack = lane.waiting.splice(0, count);
    for (const p of pack) this.unwatch(p);
    return pack;
  }

  private watch(signal: AbortSignal, pending: Pending<T>): void {
    let watch = this.watches.get(signal);
    if (!watch) {
      const items = new Set<Pending<T>>();
      const onAbort = () => {
        this.watches.delete(signal);
        this.cancel(signal, items);
      };
      watch = { items, onAbort };
      this.watches.set(signal, watch);
      signal.addEventListener('abort', onAbort, { once: true });
    }
    watch.items.add(pending);
  }

  private unwatch(pending: Pending<T>): void {
    const { signal } = pending;
    const watch = signal && this.watches.get(signal);
    if (!signal || !watch) return;
    watch.items.delete(pending);
    if (watch.items.size > 0) return;
    this.watches.delete(signal);
    signal.removeEventListener('abort', watch.onAbort);
  }
}
