/**
 * The project's one batching core (issue #20): items are packed by count, bytes and linger (or an idle
 * gap), only with items of the same group, at most `maxInFlight` packs running at once, and — with
 * `keyOf` — in per-key FIFO order. What a pack does (send, retry, settle its items) is the caller's
 * `run`; the batcher only decides which items travel together and when. Packs are cut when they start,
 * from what waits then, so what arrives while the window is full travels packed.
 *
 * Without `keyOf` items of a group go in the order added, several packs at once:
 * - dmp-mqtt's dedup MicroBatcher: `lingerMs` + `maxItems`, no window (one Redis pipeline per few ms).
 * - dmp-mqtt's DeadLetterBatcher: `maxItems` + `maxBytes` + `groupOf` (reason code) + a window.
 * - dmp-data's PackedSender: the same without groups.
 * - dmp-data's BatchWriter: `maxItems` + `lingerMs` (its max wait) + `idleMs` + a window, flushed
 *   eagerly while draining; it keeps the held-row bound, the retry budget and the bisection itself.
 *
 * With `keyOf` (the per-device order, docs/engineering.md "Per-device order") each key's items wait in
 * the order added, and a key has at most one pack running — its next pack starts once that one settled,
 * with the items that waited meanwhile:
 * - dmp-mqtt's OrderedBatcher: key = device, one group, so a pack (an Ingest call) carries many
 *   devices, each with up to `maxPerKey` messages, and `maxInFlight` calls run at once. A message to
 *   retry goes back to the head of its device ({@link Batcher.retry}), the device paused for its backoff.
 * - dmp-kernel's LanePacker: key = group = lane, so a pack is one lane's items in arrival order, one
 *   send per lane in flight.
 *
 * Waiting items can be taken out ({@link Batcher.remove}: a deadline, an abort, what waits behind a
 * failed item), never those of a running pack.
 */
export interface BatcherOptions {
  /** Items per pack at most (at least 1). */
  maxItems: number;
  /** Bytes (as `sizeOf` counts them) per pack, unless a single item is larger (default: no limit). */
  maxBytes?: number;
  /** Items of one key per pack at most (default: `maxItems`). */
  maxPerKey?: number;
  /**
   * A pack that is not full waits until its first item was added this long ago (0, the default: it
   * starts at once). With `keyOf` a pack starts in a later turn of the event loop than its items were
   * added either way, so the items of one turn (one call's batch) travel together.
   */
  lingerMs?: number;
  /**
   * A pack that is not full may also start once nothing joined it for this long (0, the default: off),
   * within its linger time. Useful when the producer sends in bursts (a FIFO consumer gets no more until
   * it acked what it holds).
   */
  idleMs?: number;
  /** Packs running at once, over all keys (default: no limit; a key has one at most anyway). */
  maxInFlight?: number;
}

export interface BatcherHooks<T> {
  /** The unit of order: its items start in the order added, one pack at a time (default: no order to keep). */
  keyOf?: (item: T) => string;
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
  /** One pack at a time (a key of `keyOf`); a group's queue without `keyOf` is not. */
  exclusive: boolean;
  /** While its head backs off: the key is not ready before this time. */
  holdUntil: number;
  holdTimer?: NodeJS.Timeout;
}

/** What the next pack of a group would carry: how many items of each ready key, in order. */
interface Plan<T> {
  parts: [Key<T>, number][];
  full: boolean;
  firstAddedAt: number;
  lastAddedAt: number;
}

export class Batcher<T> {
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
  private eager = false;

  constructor(
    private readonly options: BatcherOptions,
    private readonly hooks: BatcherHooks<T>,
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

  /** Queues an item behind its key's (or group's); returns false (and queues nothing) once closed. */
  add(item: T): boolean {
    if (this.closed) return false;
    const group = this.hooks.groupOf?.(item) ?? '';
    const name = this.hooks.keyOf?.(item) ?? group;
    let key = this.keys.get(name);
    if (!key) {
      key = {
        name,
        group,
        waiting: [],
        bytes: 0,
        running: false,
        exclusive: this.hooks.keyOf !== undefined,
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
    const { keyOf } = this.hooks;
    if (!keyOf) throw new Error('Batcher.retry: only with keyOf (an order to keep)');
    const byKey = new Map<Key<T>, Waiting<T>[]>();
    for (const item of items) {
      const key = this.keys.get(keyOf(item));
      if (!key?.running) throw new Error('Batcher.retry: the item is not in a running pack');
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

  /**
   * From now on (until called with false) packs start as soon as the window has room, without their
   * linger or idle time — what waits for room is still packed. For draining before a shutdown.
   */
  flushEagerly(on = true): void {
    this.eager = on;
    this.schedulePump();
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

  /**
   * With `keyOf`, one pump per turn of the event loop: a key's items added in one turn travel together
   * (its first item alone would hold the rest back a whole run). Without, a pump at once: under light
   * load an item goes without delay, and what a full window holds back is packed anyway.
   */
  private schedulePump(): void {
    if (!this.hooks.keyOf) return this.pump();
    if (this.pumpScheduled) return;
    this.pumpScheduled = true;
    setImmediate(() => {
      this.pumpScheduled = false;
      this.pump();
    });
  }

  /** Starts packs while the window has room: full ones, and those whose linger (or idle) time is over. */
  private pump(): void {
    const maxInFlight = this.options.maxInFlight ?? Number.POSITIVE_INFINITY;
    for (const group of [...this.ready.keys()]) {
      while (!this.closed && this.running < maxInFlight) {
        const ready = this.ready.get(group);
        if (!ready) break;
        const plan = this.plan(ready);
        const dueAt = this.dueAt(plan);
        if (!plan.full && dueAt > Date.now()) {
          this.lingerUntil(group, dueAt);
          break;
        }
        this.start(plan);
      }
    }
  }

  /** When a pack that is not full may start: its linger time after its first item, or an idle gap after its last. */
  private dueAt({ firstAddedAt, lastAddedAt }: Plan<T>): number {
    const lingerMs = this.options.lingerMs ?? 0;
    const idleMs = this.options.idleMs ?? 0;
    if (this.eager || (lingerMs <= 0 && idleMs <= 0)) return 0;
    return Math.min(
      lingerMs > 0 ? firstAddedAt + lingerMs : Number.POSITIVE_INFINITY,
      idleMs > 0 ? lastAddedAt + idleMs : Number.POSITIVE_INFINITY,
    );
  }

  /** Pumps again when a group's next pack is due (a timer left from an earlier pack only pumps once more). */
  private lingerUntil(group: string, at: number): void {
    const armed = this.lingerTimers.get(group);
    if (armed?.at === at) return;
    clearTimeout(armed?.timer);
    // `at` may have passed already: Node warns of a negative delay.
    const delayMs = Math.max(0, at - Date.now());
    const timer = setTimeout(() => {
      this.lingerTimers.delete(group);
      this.pump();
    }, delayMs);
    this.lingerTimers.set(group, { at, timer });
  }

  /** The next pack of a group: ready keys in order, each up to `maxPerKey`, within the pack's bounds. */
  private plan(ready: Set<Key<T>>): Plan<T> {
    const { maxItems } = this.options;
    const maxBytes = this.options.maxBytes ?? Number.POSITIVE_INFINITY;
    // Without keyOf a group is one queue, planned again at every add while its pack lingers: count, not
    // walk, its items (the batch writer holds thousands). Its items' times only grow (no retry here).
    const [queue] = ready;
    if (ready.size === 1 && !queue.exclusive && maxBytes === Number.POSITIVE_INFINITY) {
      const taken = Math.min(queue.waiting.length, maxItems);
      return {
        parts: [[queue, taken]],
        full: taken >= maxItems,
        firstAddedAt: queue.waiting[0].addedAt,
        lastAddedAt: queue.waiting[taken - 1].addedAt,
      };
    }
    const parts: [Key<T>, number][] = [];
    let count = 0;
    let bytes = 0;
    let full = false;
    let firstAddedAt = 0;
    let lastAddedAt = 0;
    for (const key of ready) {
      const maxPerKey = key.exclusive ? (this.options.maxPerKey ?? maxItems) : maxItems;
      let taken = 0;
      for (const w of key.waiting) {
        if (taken >= maxPerKey) break;
        if (count >= maxItems || (count > 0 && bytes + w.size > maxBytes)) {
          full = true;
          break;
        }
        if (count === 0) firstAddedAt = w.addedAt;
        lastAddedAt = Math.max(lastAddedAt, w.addedAt);
        taken++;
        count++;
        bytes += w.size;
      }
      if (taken > 0) parts.push([key, taken]);
      if (full) break;
    }
    return { parts, full: full || count >= maxItems || bytes >= maxBytes, firstAddedAt, lastAddedAt };
  }

  private start(plan: Plan<T>): void {
    const items: T[] = [];
    const keys: Key<T>[] = [];
    for (const [key, n] of plan.parts) {
      const taken = key.waiting.splice(0, n);
      this.count(key, -n, -taken.reduce((sum, w) => sum + w.size, 0));
      for (const w of taken) items.push(w.item);
      if (!key.exclusive) {
        this.forget(key); // a group's queue stays ready while items wait in it
        continue;
      }
      this.unready(key);
      key.running = true;
      keys.push(key);
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
