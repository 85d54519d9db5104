/**
 * The project's per-key FIFO (issue #20), for the batchers that keep the per-device order
 * (docs/engineering.md, "Per-device order"): each key's items wait in the order added, and a key has at
 * most one pack running at a time — its next pack starts once that one settled, with the items that
 * waited meanwhile. Packs are cut when they start, from the head of the ready keys: what arrives until
 * then travels with them. It serves two shapes:
 *
 * - dmp-mqtt's OrderedBatcher: key = device, one group, so a pack (an Ingest call) carries many
 *   devices, each with up to `maxPerKey` messages, and `maxInFlight` calls run at once. A message to
 *   retry goes back to the head of its device ({@link KeyedFifo.retry}), the device paused for its
 *   backoff.
 * - dmp-kernel's LanePacker: key = group = lane, so a pack is one lane's items in arrival order, one
 *   send per lane in flight.
 *
 * Waiting items can be taken out ({@link KeyedFifo.remove}: a deadline, an abort, what waits behind a
 * failed item), never those of a running pack. What a pack does with its items is the caller's `run`.
 * The plain `Batcher` is the core for batchers without an order to keep: it packs when items arrive.
 */
export interface KeyedFifoOptions {
  /** Items per pack at most (at least 1). */
  maxItems: number;
  /** Bytes (as `sizeOf` counts them) per pack, unless a single item is larger (default: no limit). */
  maxBytes?: number;
  /** Items of one key per pack at most (default: `maxItems`). */
  maxPerKey?: number;
  /**
   * A pack that is not full waits until its first item was added this long ago (0, the default: it
   * starts at once). Either way a pack starts in a later turn of the event loop than its items were
   * added, so the items of one turn (one call's batch) travel together.
   */
  lingerMs?: number;
  /** Packs running at once, over all keys (default: no limit; a key has one at most anyway). */
  maxInFlight?: number;
}

export interface KeyedFifoHooks<T> {
  /** The unit of order: its items start in the order added, one pack at a time. */
  keyOf: (item: T) => string;
  /** Packs carry items of one group only (default: one group); a key's items are of one group. */
  groupOf?: (item: T) => string;
  /** Size of an item for `maxBytes` (default 0). */
  sizeOf?: (item: T) => number;
  /** Handles one pack; its keys wait until the promise settles (a rejection is ignored). */
  run: (items: T[]) => Promise<void>;
}

interface Waiting<T> {
  item: T;
  size: number;
  addedAt: number;
}

interface Key<T> {
  name: string;
  group: string;
  waiting: Waiting<T>[];
  bytes: number;
  running: boolean;
  /** While its head backs off: the key is not ready before this time. */
  holdUntil: number;
  holdTimer?: NodeJS.Timeout;
}

/** What the next pack of a group would carry: how many items of each ready key, in order. */
interface Plan<T> {
  parts: [Key<T>, number][];
  full: boolean;
  firstAddedAt: number;
}

export class KeyedFifo<T> {
  private readonly keys = new Map<string, Key<T>>();
  /** Per group, its keys ready for a pack (nothing running, not held), in the order they became ready. */
  private readonly ready = new Map<string, Set<Key<T>>>();
  /** Per group whose next pack lingers: when it is due. */
  private readonly lingerTimers = new Map<string, { at: number; timer: NodeJS.Timeout }>();
  private waitingItems = 0;
  private waitingByteCount = 0;
  private runningItems = 0;
  private running = 0;
  private pumpScheduled = false;
  private closed = false;

  constructor(
    private readonly options: KeyedFifoOptions,
    private readonly hooks: KeyedFifoHooks<T>,
  ) {}

  /** Items waiting for a pack. */
  get waiting(): number {
    return this.waitingItems;
  }

  /** Bytes of the items waiting for a pack. */
  get waitingBytes(): number {
    return this.waitingByteCount;
  }

  /** Items in packs running. */
  get inFlight(): number {
    return this.runningItems;
  }

  /** Packs running. */
  get packsInFlight(): number {
    return this.running;
  }

  /** What waits of one key (nothing for a key not in use). */
  waitingOf(key: string): { items: number; bytes: number } {
    const state = this.keys.get(key);
    return { items: state?.waiting.length ?? 0, bytes: state?.bytes ?? 0 };
  }

  /** Queues an item behind its key's; returns false (and queues nothing) once closed. */
  add(item: T): boolean {
    if (this.closed) return false;
    const name = this.hooks.keyOf(item);
    let key = this.keys.get(name);
    if (!key) {
      key = {
        name,
        group: this.hooks.groupOf?.(item) ?? '',
        waiting: [],
        bytes: 0,
        running: false,
        holdUntil: 0,
      };
      this.keys.set(name, key);
    }
    const size = this.hooks.sizeOf?.(item) ?? 0;
    key.waiting.push({ item, size, addedAt: Date.now() });
    this.count(key, 1, size);
    this.markReady(key);
    return true;
  }

  /**
   * Puts items of a running pack back at the head of their keys, in their order, before what waited
   * meanwhile; their keys' next packs start no sooner than `delayMs` from now (a backoff).
   */
  retry(items: readonly T[], delayMs = 0): void {
    const byKey = new Map<Key<T>, Waiting<T>[]>();
    for (const item of items) {
      const key = this.keys.get(this.hooks.keyOf(item));
      if (!key?.running) throw new Error('KeyedFifo.retry: the item is not in a running pack');
      const back = byKey.get(key) ?? [];
      back.push({ item, size: this.hooks.sizeOf?.(item) ?? 0, addedAt: Date.now() });
      byKey.set(key, back);
    }
    for (const [key, back] of byKey) {
      key.waiting.unshift(...back);
      this.count(
        key,
        back.length,
        back.reduce((sum, w) => sum + w.size, 0),
      );
      key.holdUntil = Math.max(key.holdUntil, Date.now() + delayMs);
    }
  }

  /**
   * Takes out the waiting items of `key` that `pick` chooses, and returns them; `pick` sees them in
   * their order, so it can take what waits behind a failed item along. When the head goes, so does
   * its backoff.
   */
  remove(name: string, pick: (item: T) => boolean): T[] {
    const key = this.keys.get(name);
    if (!key) return [];
    const removed: Waiting<T>[] = [];
    const head = key.waiting[0];
    key.waiting = key.waiting.filter((w) => {
      if (!pick(w.item)) return true;
      removed.push(w);
      return false;
    });
    if (removed.length === 0) return [];
    this.count(key, -removed.length, -removed.reduce((sum, w) => sum + w.size, 0));
    if (removed[0] === head) this.release(key);
    this.forget(key);
    return removed.map((w) => w.item);
  }

  /** Starts no more packs and hands back the items waiting (running packs go on). */
  close(): T[] {
    this.closed = true;
    for (const { timer } of this.lingerTimers.values()) clearTimeout(timer);
    this.lingerTimers.clear();
    this.ready.clear();
    const left: T[] = [];
    for (const key of this.keys.values()) {
      clearTimeout(key.holdTimer);
      left.push(...key.waiting.map((w) => w.item));
      this.count(key, -key.waiting.length, -key.bytes);
      key.waiting = [];
    }
    for (const key of [...this.keys.values()]) this.forget(key);
    return left;
  }

  private count(key: Key<T>, items: number, bytes: number): void {
    key.bytes += bytes;
    this.waitingItems += items;
    this.waitingByteCount += bytes;
  }

  /** Ends a key's hold (its head went, or its backoff is over). */
  private release(key: Key<T>): void {
    clearTimeout(key.holdTimer);
    key.holdTimer = undefined;
    key.holdUntil = 0;
    this.markReady(key);
  }

  /** Makes a key ready for its group's next pack, if it is: items wait, nothing runs, not held. */
  private markReady(key: Key<T>): void {
    if (this.closed || key.running || key.waiting.length === 0) return;
    const hold = key.holdUntil - Date.now();
    if (hold > 0) {
      key.holdTimer ??= setTimeout(() => this.release(key), hold);
      return;
    }
    let ready = this.ready.get(key.group);
    if (!ready) this.ready.set(key.group, (ready = new Set()));
    ready.add(key);
    this.schedulePump();
  }

  private unready(key: Key<T>): void {
    const ready = this.ready.get(key.group);
    if (!ready?.delete(key) || ready.size > 0) return;
    this.ready.delete(key.group);
    clearTimeout(this.lingerTimers.get(key.group)?.timer);
    this.lingerTimers.delete(key.group);
  }

  /** Drops the state of a key that has nothing waiting or running. */
  private forget(key: Key<T>): void {
    if (key.running || key.waiting.length > 0) return;
    clearTimeout(key.holdTimer);
    this.unready(key);
    this.keys.delete(key.name);
  }

  /** One pump per turn of the event loop: the items added in this turn are there when packs are cut. */
  private schedulePump(): void {
    if (this.pumpScheduled) return;
    this.pumpScheduled = true;
    setImmediate(() => {
      this.pumpScheduled = false;
      this.pump();
    });
  }

  /** Starts packs while the window has room: full ones, and those whose linger time is over. */
  private pump(): void {
    const maxInFlight = this.options.maxInFlight ?? Number.POSITIVE_INFINITY;
    const lingerMs = this.options.lingerMs ?? 0;
    for (const group of [...this.ready.keys()]) {
      while (!this.closed && this.running < maxInFlight) {
        const ready = this.ready.get(group);
        if (!ready) break;
        const plan = this.plan(ready);
        const dueAt = plan.firstAddedAt + lingerMs;
        if (!plan.full && dueAt > Date.now()) {
          this.lingerUntil(group, dueAt);
          break;
        }
        this.start(plan);
      }
    }
  }

  /** Pumps again when a group's next pack is due (a timer left from an earlier pack only pumps once more). */
  private lingerUntil(group: string, at: number): void {
    const armed = this.lingerTimers.get(group);
    if (armed?.at === at) return;
    clearTimeout(armed?.timer);
    const timer = setTimeout(() => {
      this.lingerTimers.delete(group);
      this.pump();
    }, at - Date.now());
    this.lingerTimers.set(group, { at, timer });
  }

  /** The next pack of a group: ready keys in order, each up to `maxPerKey`, within the pack's bounds. */
  private plan(ready: Set<Key<T>>): Plan<T> {
    const { maxItems } = this.options;
    const maxBytes = this.options.maxBytes ?? Number.POSITIVE_INFINITY;
    const maxPerKey = this.options.maxPerKey ?? maxItems;
    const parts: [Key<T>, number][] = [];
    let count = 0;
    let bytes = 0;
    let full = false;
    let firstAddedAt = 0;
    for (const key of ready) {
      let taken = 0;
      for (const w of key.waiting) {
        if (taken >= maxPerKey) break;
        if (count >= maxItems || (count > 0 && bytes + w.size > maxBytes)) {
          full = true;
          break;
        }
        if (count === 0) firstAddedAt = w.addedAt;
        taken++;
        count++;
        bytes += w.size;
      }
      if (taken > 0) parts.push([key, taken]);
      if (full) break;
    }
    return { parts, full: full || count >= maxItems || bytes >= maxBytes, firstAddedAt };
  }

  private start(plan: Plan<T>): void {
    const items: T[] = [];
    const keys: Key<T>[] = [];
    for (const [key, n] of plan.parts) {
      const taken = key.waiting.splice(0, n);
      this.count(key, -n, -taken.reduce((sum, w) => sum + w.size, 0));
      this.unready(key);
      key.running = true;
      keys.push(key);
      for (const w of taken) items.push(w.item);
    }
    this.running++;
    this.runningItems += items.length;
    let done: Promise<void>;
    try {
      done = this.hooks.run(items);
    } catch (error) {
      done = Promise.reject(error instanceof Error ? error : new Error(String(error)));
    }
    const settle = () => {
      this.running--;
      this.runningItems -= items.length;
      for (const key of keys) {
        key.running = false;
        this.markReady(key);
        this.forget(key);
      }
      this.schedulePump();
    };
    done.then(settle, settle);
  }
}
