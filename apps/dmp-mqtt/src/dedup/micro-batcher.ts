import { Batcher } from '@dmp/flow';

/**
 * Collects items for up to `lingerMs` (or `maxItems`) and hands them over in one call — one Redis
 * pipeline per few milliseconds instead of one round trip per message. Each `submit` resolves with its
 * item's result, or rejects with the batch's error. A configuration of the project's one batching core
 * (`@dmp/flow`): linger + count, no window (each batch is one pipelined command).
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
  private readonly batcher: Batcher<Waiting<I, O>>;

  constructor(options: MicroBatcherOptions, flush: Flush<I, O>) {
    this.batcher = new Batcher<Waiting<I, O>>(
      { lingerMs: options.lingerMs, maxItems: options.maxItems },
      { run: (batch) => MicroBatcher.answer(batch, flush) },
    );
  }

  submit(item: I): Promise<O> {
    return new Promise<O>((resolve, reject) => {
      this.batcher.add({ item, resolve, reject });
    });
  }

  /** Settles each waiting item with its result, or all of them with the flush's error. */
  private static async answer<I, O>(batch: Waiting<I, O>[], flush: Flush<I, O>): Promise<void> {
    let values: readonly O[];
    try {
      values = await flush(batch.map((w) => w.item));
    } catch (error) {
      for (const w of batch) w.reject(error);
      return;
    }
    batch.forEach((w, i) =>
      i < values.length ? w.resolve(values[i]) : w.reject(new Error('no result for this item')),
    );
  }
}
