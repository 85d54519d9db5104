/**
 * Collects items for up to `lingerMs` (or `maxItems`) and hands them over in one call — one Redis
 * pipeline per few milliseconds instead of one round trip per message. Each `submit` resolves with its
 * item's result, or rejects with the batch's error.
 */
export interface MicroBatcherOptions {
  lingerMs: number;
  maxItems: number;
}

type Flush<I, O> = (items: readonly I[]) => Promise<readonly O[]>;

interface Waiting<I, O> {
  item: I;
  resolve: (value: O) => void;
  reject: (error: unknown) => void;
}

export class MicroBatcher<I, O> {
  private batch: Waiting<I, O>[] = [];
  private timer?: NodeJS.Timeout;

  constructor(
    private readonly options: MicroBatcherOptions,
    private readonly flush: Flush<I, O>,
  ) {}

  submit(item: I): Promise<O> {
    return new Promise<O>((resolve, reject) => {
      this.batch.push({ item, resolve, reject });
      if (this.batch.length >= this.options.maxItems) this.send();
      else this.timer ??= setTimeout(() => this.send(), this.options.lingerMs);
    });
  }

  private send(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
    const batch = this.batch;
    this.batch = [];
    if (batch.length === 0) return;
    let results: Promise<readonly O[]>;
    try {
      results = this.flush(batch.map((w) => w.item));
    } catch (error) {
      results = Promise.reject(error instanceof Error ? error : new Error(String(error)));
    }
    results.then(
      (values) => {
        batch.forEach((w, i) =>
          i < values.length ? w.resolve(values[i]) : w.reject(new Error('no result for this item')),
        );
      },
      (error: unknown) => {
        for (const w of batch) w.reject(error);
      },
    );
  }
}
