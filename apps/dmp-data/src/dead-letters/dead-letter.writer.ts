import { ClickHouseRepository, type DeadLetterRow } from '@dmp/clickhouse';
import { DEAD_LETTERS_TABLE } from '@dmp/contracts';
import { ClickHouseRowWriter } from '../storage/row-writer';
import type { DeadLettersConfig } from './dead-letters.config';

/**
 * Batches dead letters into `dead_letters`; `store` resolves once the row is in ClickHouse (the consumer
 * then acks). Rows ClickHouse refuses are rejected as not retryable; as a dead letter has no dead-letter
 * topic of its own, its consumer redelivers them too (never acknowledged unstored).
 */
export class DeadLetterWriter extends ClickHouseRowWriter<DeadLetterRow> {
  constructor(clickhouse: ClickHouseRepository, config: DeadLettersConfig) {
    super(clickhouse, {
      name: 'DeadLetterWriter',
      items: 'dead letter(s)',
      refused: 'redelivered',
      batch: config.batch,
      insert: (clickhouse, rows, links) => clickhouse.insertRows(DEAD_LETTERS_TABLE, rows, { links }),
    });
  }
}
