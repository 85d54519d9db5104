import type { RocketMqMessage } from '@dmp/messaging';
import { linkTo, MetricsRegistry } from '@dmp/observability';
import type { Counter } from 'prom-client';
import { toDeadLetterRows } from './dead-letter-row';
import type { DeadLetterWriter } from './dead-letter.writer';

/**
 * Handles one dead letter — or batch of them (dmp-mqtt packs refused device messages) — stores each in
 * `dead_letters` and resolves once all are there (the consumer then acks). Any dead letter is storable — the row mapping tolerates missing properties and any payload — so
 * failures are ClickHouse's (retried, then redelivered).
 */
export class DeadLettersService {
  private readonly stored: Counter<'source' | 'code'>;

  constructor(
    private readonly writer: DeadLetterWriter,
    metrics: MetricsRegistry,
  ) {
    this.stored = metrics.counter(
      'dmp_data_dead_letters_stored_total',
      'Dead letters stored in ClickHouse dead_letters, by source and DMP_ERR_* code',
      ['source', 'code'],
    );
  }

  async handle(message: RocketMqMessage): Promise<void> {
    const rows = toDeadLetterRows(message);
    const link = linkTo({
      traceparent: message.properties.traceparent,
      tracestate: message.properties.tracestate,
    });
    await Promise.all(rows.map((row) => this.writer.store(row, link)));
    for (const row of rows) this.stored.inc({ source: row.source, code: row.error_code });
  }
}
