import { ClickHouseRepository, type DeadLetterRow } from '@dmp/clickhouse';
import { DEAD_LETTERS_TABLE } from '@dmp/contracts';
import { ClickHouseRowWriter } from '../storage/row-writer';
import type { DeadLettersConfig } from './dead-letters.config';

/**
 * Batches dead letters into `dead_letters`; `store` resolves once the row is in ClickHouse (the consumer
 * then acks). Rows ClickHouse refuses are rejected as not retryable, and dropped: a dead letter has no
 * dead-letter topic of its own.
 */
export class DeadLetterWriter extends ClickHouseRowWriter<DeadLetterRow> {
  constructor(clickhouse: ClickHouseRepository, config: DeadLettersConfig) {
    super(clickhouse, {
      name: 'DeadLetterWriter',
      items: 'dead letter(s)',
      refused: 'dropped',
      batch: config.batch,
      insert: (clickhouse, rows, links) => clickhouse.insertRows(DEAD_LETTERS_TABLE, rows, { links }),
    });
  }
}
