import { ClickHouseRepository, isDataError, type DeadLetterRow } from '@dmp/clickhouse';
import { DEAD_LETTERS_TABLE } from '@dmp/contracts';
import { Logger } from '@nestjs/common';
import type { Link } from '@opentelemetry/api';
import { BatchWriter } from '../storage/batch-writer';
import type { DeadLettersConfig } from './dead-letters.config';

/** Max producer links on one insert span (OpenTelemetry's default cap is 128). */
const MAX_LINKS = 128;

interface Pending {
  row: DeadLetterRow;
  link?: Link;
}

/**
 * Batches dead letters into `dead_letters`; `store` resolves once the row is in ClickHouse (the consumer
 * then acks). Same BatchWriter as the telemetry writer: retries transient failures, isolates rows
 * ClickHouse refuses (rejected as not retryable).
 */
export class DeadLetterWriter {
  private readonly logger = new Logger('DeadLetterWriter');
  private readonly writer: BatchWriter<Pending>;

  constructor(
    private readonly clickhouse: ClickHouseRepository,
    config: DeadLettersConfig,
  ) {
    this.writer = new BatchWriter<Pending>((items) => this.insert(items), config.batch, {
      isItemError: isDataError,
      onRetry: (error, attempt, items, delayMs) =>
        this.logger.warn(
          `insert of ${items} dead letter(s) failed (attempt ${attempt}), retrying in ${delayMs} ms: ${text(error)}`,
        ),
      onFailed: (error, items, retryable) =>
        this.logger.error(
          `insert of ${items.length} dead letter(s) failed for good (${retryable ? 'redelivered later' : 'dropped'}): ${text(error)}`,
        ),
    });
  }

  store(row: DeadLetterRow, link?: Link): Promise<void> {
    return this.writer.write({ row, ...(link ? { link } : {}) });
  }

  flushEagerly(): void {
    this.writer.flushEagerly();
  }

  close(): Promise<void> {
    return this.writer.close();
  }

  private async insert(items: readonly Pending[]): Promise<void> {
    const links = items.flatMap(({ link }) => (link ? [link] : [])).slice(0, MAX_LINKS);
    await this.clickhouse.insertRows(
      DEAD_LETTERS_TABLE,
      items.map(({ row }) => row),
      { links },
    );
  }
}

const text = (error: unknown) => (error instanceof Error ? error.message : String(error));
