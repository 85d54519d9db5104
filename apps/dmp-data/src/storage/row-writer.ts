import { ClickHouseRepository, isDataError } from '@dmp/clickhouse';
import { errorMessage } from '@dmp/contracts';
import { Logger } from '@nestjs/common';
import type { Link } from '@opentelemetry/api';
import { BatchWriter, MAX_BATCH_LINKS, type BatchWriterOptions } from './batch-writer';

export interface RowWriterOptions<T> {
  /** Logger context, e.g. `AlarmWriter`. */
  name: string;
  /** What the items are called in logs, e.g. `alarm event(s)`. */
  items: string;
  /** What becomes of items ClickHouse refuses for good: `dead-lettered` by the consumer, or `dropped`. */
  refused: string;
  batch: BatchWriterOptions;
  /**
   * Inserts one batch (idempotently: ReplacingMergeTree tables, a batch may be written again); `links`
   * are the producers of its items, as many as one span takes.
   */
  insert: (clickhouse: ClickHouseRepository, items: readonly T[], links: Link[]) => Promise<void>;
}

/**
 * A BatchWriter of one kind of item into ClickHouse, for the streams dmp-data stores besides telemetry
 * (alarms, dead letters): `store` resolves once the item's batch is in ClickHouse (the consumer then
 * acks); transient failures are retried, rows ClickHouse refuses are isolated and rejected as not
 * retryable. On shutdown the stream's lifecycle calls `flushEagerly`, stops the consumer, then `close`.
 */
export class ClickHouseRowWriter<T> {
  private readonly logger: Logger;
  private readonly writer: BatchWriter<{ item: T; link?: Link }>;

  constructor(clickhouse: ClickHouseRepository, options: RowWriterOptions<T>) {
    this.logger = new Logger(options.name);
    this.writer = new BatchWriter<{ item: T; link?: Link }>(
      (pending) =>
        options.insert(
          clickhouse,
          pending.map(({ item }) => item),
          pending.flatMap(({ link }) => (link ? [link] : [])).slice(0, MAX_BATCH_LINKS),
        ),
      options.batch,
      {
        isItemError: isDataError,
        onRetry: (error, attempt, items, delayMs) =>
          this.logger.warn(
            `insert of ${items} ${options.items} failed (attempt ${attempt}), retrying in ${delayMs} ms: ${errorMessage(error)}`,
          ),
        onFailed: (error, items, retryable) =>
          this.logger.error(
            `insert of ${items.length} ${options.items} failed for good (${retryable ? 'redelivered later' : options.refused}): ${errorMessage(error)}`,
          ),
      },
    );
  }

  store(item: T, link?: Link): Promise<void> {
    return this.writer.write({ item, ...(link ? { link } : {}) });
  }

  flushEagerly(): void {
    this.writer.flushEagerly();
  }

  close(): Promise<void> {
    return this.writer.close();
  }
}
