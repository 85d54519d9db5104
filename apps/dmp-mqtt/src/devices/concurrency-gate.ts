/**
 * At most `maxRunning` tasks at once, at most `maxQueued` waiting (first come, first served); beyond
 * that a task is refused at once instead of waiting. What guards the scrypt checks of logins
 * (device-secret.ts): node:crypto runs scrypt on libuv's thread pool (4 threads by default, shared with
 * file and DNS work), and EMQX gives up on an authn call after 5 s — a queue that cannot drain in that
 * time only makes every login late. Refusing fast keeps the others on time.
 */
export class ConcurrencyGate {
  private running = 0;
  private readonly queue: (() => void)[] = [];
  private refusedCount = 0;

  constructor(
    private readonly maxRunning: number,
    private readonly maxQueued: number,
  ) {}

  get active(): number {
    return this.running;
  }

  get waiting(): number {
    return this.queue.length;
  }

  /** Tasks refused because the queue was full, since start. */
  get refused(): number {
    return this.refusedCount;
  }

  /** Runs `task` when a slot is free; `undefined` (task not run) when the queue is full. */
  async run<T>(task: () => Promise<T>): Promise<{ value: T } | undefined> {
    if (this.running >= this.maxRunning) {
      if (this.queue.length >= this.maxQueued) {
        this.refusedCount += 1;
        return undefined;
      }
      // The slot is handed over by the task that releases it (running stays counted).
      await new Promise<void>((resolve) => this.queue.push(resolve));
    } else {
      this.running += 1;
    }
    try {
      return { value: await task() };
    } finally {
      const next = this.queue.shift();
      if (next) next();
      else this.running -= 1;
    }
  }
}
