/**
 * The project's one batching core (issue #20): items are packed into batches by count, bytes and
 * linger, optionally only with items of the same group, and at most `maxInFlight` batches run at once.
 * What a batch does (send, retry, settle its items) is the caller's `run`; the batcher only decides
 * which items travel together and when. Each former batcher is a configuration of it:
 *
 * - dmp-mqtt's dedup MicroBatcher: `lingerMs` + `maxItems`, no window (one Redis pipeline per few ms).
 * - dmp-mqtt's DeadLetterBatcher: `maxItems` + `maxBytes` + `groupOf` (reason code) + a window, no
 *   linger: under light load an item goes at once, under a flood what waits is packed.
 * - dmp-data's PackedSender: the same without groups.
 * - dmp-data's BatchWriter: `maxItems` + `lingerMs` (its max wait) + `idleMs` + a window, flushed
 *   eagerly while draining; it keeps the held-row bound, the retry budget and the bisection itself.
 *
 * The two batchers that keep the per-device order — dmp-mqtt's OrderedBatcher and dmp-kernel's
 * LanePacker — need more than groups: one pack in flight per key, and a key's items in the order added
 * across packs and retries. They are built on {@link KeyedFifo} (keyed-fifo.ts), which cuts its packs
 * when they start; see docs/engineering.md, "Per-device order".
 */
export interface BatcherOptions {
  /** Items per batch at most (at least 1). */
  maxItems: number;
  /** Bytes (as `sizeOf` counts them) per batch, unless a single item is larger (default: no limit). */
  maxBytes?: number;
  /**
   * How long an open batch waits for more items before it may start (0, the default: it starts as
   * soon as the window has room; what arrives while the window is full is packed into the next batches).
   */
  lingerMs?: number;
  /**
   * An open batch may also start once nothing joined it for this long (0, the default: off). Useful when
   * the producer sends in bursts (a FIFO consumer gets no more until it acked what it holds).
   */
  idleMs?: number;
  /** Batches running at once (default: no limit). */
  maxInFlight?: number;
}

export interface BatcherHooks<T> {
  /** Items only of the same group travel in one batch (default: one group). */
  groupOf?: (item: T) => string;
  /** Size of an item for `maxBytes` (default 0). */
  sizeOf?: (item: T) => number;
  /** Handles one batch; it holds its place in the window until the promise settles (a rejection is ignored). */
  run: (items: T[]) => Promise<void>;
}

interface Open<T> {
  items: T[];
  bytes: number;
  openedAt: number;
  timer?: NodeJS.Timeout;
  /** Its linger (or idle) time is over: it starts at the next room, taking items until then. */
  due: boolean;
}

export class Batcher<T> {
  private readonly open = new Map<string, Open<T>>();
  private readonly ready: T[][] = [];
  private queuedItems = 0;
  private runningItems = 0;
  private running = 0;
  private closed = false;
  private eager = false;

  constructor(
    private readonly options: BatcherOptions,
    private readonly hooks: BatcherHooks<T>,
  ) {}

  /** Items waiting for a batch to start. */
  get queued(): number {
    return this.queuedItems;
  }

  /** Items in batches running. */
  get inFlight(): number {
    return this.runningItems;
  }

  /** Batches running. */
  get batchesInFlight(): number {
    return this.running;
  }

  /** Queues an item; returns false (and queues nothing) once closed. */
  add(item: T): boolean {
    if (this.closed) return false;
    const size = this.hooks.sizeOf?.(item) ?? 0;
    const maxBytes = this.options.maxBytes ?? Number.POSITIVE_INFINITY;
    const group = this.hooks.groupOf?.(item) ?? '';
    this.queuedItems++;
    let open = this.open.get(group);
    if (open && open.bytes + size > maxBytes) {
      this.seal(group, open);
      open = undefined;
    }
    const fresh = !open;
    if (!open) {
      open = { items: [], bytes: 0, openedAt: Date.now(), due: false };
      this.open.set(group, open);
    }
    open.items.push(item);
    open.bytes += size;
    if (fresh || (this.options.idleMs ?? 0) > 0) this.arm(open);
    if (open.items.length >= this.options.maxItems || open.bytes >= maxBytes) this.seal(group, open);
    this.pump();
    return true;
  }

  /**
   * From now on (until called with false) open batches start as soon as the window has room, as without
   * linger — what waits for room is still packed. For draining before a shutdown.
   */
  flushEagerly(on = true): void {
    this.eager = on;
    this.pump();
  }

  /** Starts no more batches and hands back the items that had not started (running batches go on). */
  close(): T[] {
    this.closed = true;
    for (const [group, open] of this.open) this.seal(group, open);
    const left = this.ready.splice(0).flat();
    this.queuedItems -= left.length;
    return left;
  }

  /** (Re)arms an open batch's timer: due at its linger time or after idleMs without a new item. */
  private arm(open: Open<T>): void {
    const lingerMs = this.options.lingerMs ?? 0;
    const idleMs = this.options.idleMs ?? 0;
    if (lingerMs <= 0 && idleMs <= 0) return;
    const now = Date.now();
    const dueAt = Math.min(
      lingerMs > 0 ? open.openedAt + lingerMs : Number.POSITIVE_INFINITY,
      idleMs > 0 ? now + idleMs : Number.POSITIVE_INFINITY,
    );
    clearTimeout(open.timer);
    open.timer = setTimeout(
      () => {
        open.due = true;
        this.pump();
      },
      Math.max(0, dueAt - now),
    );
  }

  /** A full batch waits for the next place in the window. */
  private seal(group: string, open: Open<T>): void {
    clearTimeout(open.timer);
    this.open.delete(group);
    this.ready.push(open.items);
  }

  /**
   * Starts batches while the window has room: sealed ones first, then the oldest open one that may go
   * (its linger or idle time is over, or the batcher waits for neither, or flushes eagerly).
   */
  private pump(): void {
    const maxInFlight = this.options.maxInFlight ?? Number.POSITIVE_INFINITY;
    const waits = (this.options.lingerMs ?? 0) > 0 || (this.options.idleMs ?? 0) > 0;
    while (this.running < maxInFlight && !this.closed) {
      let batch = this.ready.shift();
      if (!batch) {
        let next: [string, Open<T>] | undefined;
        for (const entry of this.open) {
          if (!waits || this.eager || entry[1].due) {
            next = entry;
            break;
          }
        }
        if (!next) return;
        const [group, open] = next;
        clearTimeout(open.timer);
        this.open.delete(group);
        batch = open.items;
      }
      this.start(batch);
    }
  }

  private start(batch: T[]): void {
    this.queuedItems -= batch.length;
    this.runningItems += batch.length;
    this.running++;
    let done: Promise<void>;
    try {
      done = this.hooks.run(batch);
    } catch (error) {
      done = Promise.reject(error instanceof Error ? error : new Error(String(error)));
    }
    // One hop after the run settles, so counters read 0 by the time its callers' awaits resume.
    const release = () => {
      this.running--;
      this.runningItems -= batch.length;
      this.pump();
    };
    done.then(release, release);
  }
}
