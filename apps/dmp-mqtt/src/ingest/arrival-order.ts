/**
 * Lets a key's (a device's) messages pass one point in the order they arrived, whatever order the
 * asynchronous steps before it finish in. Between arrival and the hand-off to dmp-kernel a message
 * waits for the device registry and the duplicate filter, and a redelivered copy waits there for its
 * earlier copy's hand-off to end: without this, the device's next message would overtake it.
 * Part of the per-device order invariant: see docs/engineering.md, "Per-device order".
 */
export class ArrivalOrder {
  private readonly last = new Map<string, Turn>();

  /** Call in arrival order; every turn must `leave()`, whether its message went on or was dropped. */
  enter(key: string): Turn {
    const turn: Turn = new Turn(this.last.get(key)?.left, () => {
      if (this.last.get(key) === turn) this.last.delete(key);
    });
    this.last.set(key, turn);
    return turn;
  }

  /** Keys with a turn not left yet. */
  get size(): number {
    return this.last.size;
  }
}

export class Turn {
  /** Resolves once every earlier turn of the key has left. */
  readonly ready: Promise<void>;
  readonly left: Promise<void>;
  private resolveLeft!: () => void;
  private done = false;

  constructor(
    previous: Promise<void> | undefined,
    private readonly onLeave: () => void,
  ) {
    this.ready = previous ?? Promise.resolve();
    this.left = new Promise((resolve) => (this.resolveLeft = resolve));
  }

  leave(): void {
    if (this.done) return;
    this.done = true;
    // Only once every earlier turn left: `left` means "this one and all before it".
    void this.ready.then(() => {
      this.resolveLeft();
      this.onLeave();
    });
  }
}
