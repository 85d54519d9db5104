export interface LanePackerOptions {
  /** Items per send at most… */
  maxItems: number;
  /** …and bytes (as the caller counts them), unless a single item is larger. */
  maxBytes: number;
}

/** Sends one lane's pack; resolves once it is stored, throws to fail every item of the pack. */
export type SendPack<T> = (lane: string, items: readonly T[]) => Promise<void>;

interface Pending<T> {
  item: T;
  size: number;
  resolve: () => void;
  reject: (error: unknown) => void;
}

interface Lane<T> {
  waiting: Pending<T>[];
  sending: boolean;
}

/**
 * Packs items per lane with no linger: each lane has at most one send in flight, and what arrives
 * meanwhile goes, packed, with the lane's next send. Under light load every item is sent at once (with
 * what was added in the same turn of the event loop); under load a pack carries everything that arrived
 * during one round trip — the batch grows with the load instead of with a timer. One send per lane at a
 * time also keeps a lane's packs in the order their items arrived. An item resolves when its pack is
 * stored and rejects with its pack's error.
 */
export class LanePacker<T> {
  private readonly lanes = new Map<string, Lane<T>>();
  private waitingItems = 0;
  private sendingItems = 0;

  constructor(
    private readonly options: LanePackerOptions,
    private readonly send: SendPack<T>,
  ) {}

  /** Items waiting for their lane's next send. */
  get waiting(): number {
    return this.waitingItems;
  }

  /** Items in sends in flight. */
  get sending(): number {
    return this.sendingItems;
  }

  add(lane: string, item: T, size: number): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      let state = this.lanes.get(lane);
      if (!state) {
        state = { waiting: [], sending: false };
        this.lanes.set(lane, state);
      }
      state.waiting.push({ item, size, resolve, reject });
      this.waitingItems++;
      if (!state.sending) {
        // Items added in the same turn of the event loop (one Ingest batch) start in one pack.
        state.sending = true;
        const started = state;
        setImmediate(() => void this.drain(lane, started));
      }
    });
  }

  /** Sends the lane's packs one after the other until nothing waits. */
  private async drain(name: string, lane: Lane<T>): Promise<void> {
    while (lane.waiting.length > 0) {
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
      } finally {
        this.sendingItems -= pack.length;
      }
    }
    lane.sending = false;
    this.lanes.delete(name);
  }

  private take(lane: Lane<T>): Pending<T>[] {
    let count = 0;
    let bytes = 0;
    for (const p of lane.waiting) {
      if (count >= this.options.maxItems || (count > 0 && bytes + p.size > this.options.maxBytes)) break;
      count++;
      bytes += p.size;
    }
    return lane.waiting.splice(0, count);
  }
}
