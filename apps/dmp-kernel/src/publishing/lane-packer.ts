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
}

/** Sends one lane's pack; resolves once it is stored, throws to fail every item of the pack. */
export type SendPack<T> = (lane: string, items: readonly T[]) => Promise<void>;

/** Not sent: an earlier item of the same key failed in its lane (`cause`: that failure). */
export class PrecedingItemFailedError extends Error {
  constructor(cause: unknown) {
    super('not sent: an earlier item of the same key failed', { cause });
  }
}

interface Pending<T> {
  key: string;
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
 */
export class LanePacker<T> {
  private readonly lanes = new Map<string, Lane<T>>();
  private waitingItems = 0;
  private sendingItems = 0;
  private readonly lingerMs: number;

  constructor(
    private readonly options: LanePackerOptions,
    private readonly send: SendPack<T>,
  ) {
    this.lingerMs = Math.max(0, options.lingerMs ?? 0);
  }

  /** Items waiting for their lane's next send. */
  get waiting(): number {
    return this.waitingItems;
  }

  /** Items in sends in flight. */
  get sending(): number {
    return this.sendingItems;
  }

  /** `key`: items of one key (a device) are stored in the order added, and none after one failed. */
  add(lane: string, key: string, item: T, size: number): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      let state = this.lanes.get(lane);
      if (!state) {
        state = { waiting: [], waitingBytes: 0, sending: false };
        this.lanes.set(lane, state);
      }
      state.waiting.push({ key, item, size, addedAt: this.lingerMs > 0 ? Date.now() : 0, resolve, reject });
      state.waitingBytes += size;
      this.waitingItems++;
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
    const pack = this.take(lane);
    this.waitingItems -= pack.length;
    this.sendingItems += pack.length;
    try {
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
    const kept: Pending<T>[] = [];
    for (const p of lane.waiting) {
      if (!keys.has(p.key)) {
        kept.push(p);
        continue;
      }
      lane.waitingBytes -= p.size;
      this.waitingItems--;
      p.reject(new PrecedingItemFailedError(error));
    }
    lane.waiting = kept;
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
    return lane.waiting.splice(0, count);
  }
}
