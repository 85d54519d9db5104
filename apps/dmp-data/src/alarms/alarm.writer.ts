import { ClickHouseRepository, isDataError } from '@dmp/clickhouse';
import { ALARM_EVENTS_TABLE, ALARMS_TABLE, type AlarmEvent } from '@dmp/contracts';
import { Logger } from '@nestjs/common';
import type { Link } from '@opentelemetry/api';
import { BatchWriter } from '../storage/batch-writer';
import type { AlarmsConfig } from './alarms.config';
import { toAlarmRows } from './alarm-rows';

const MAX_LINKS = 128;

interface Pending {
  event: AlarmEvent;
  link?: Link;
}

/**
 * Batches alarm events into `alarm_events` then `alarms` (both ReplacingMergeTree: a redelivered event
 * replaces itself); `store` resolves once both inserts of its batch succeeded (the consumer then acks).
 */
export class AlarmWriter {
  private readonly logger = new Logger('AlarmWriter');
  private readonly writer: BatchWriter<Pending>;

  constructor(
    private readonly clickhouse: ClickHouseRepository,
    config: AlarmsConfig,
  ) {
    this.writer = new BatchWriter<Pending>((items) => this.insert(items), config.batch, {
      isItemError: isDataError,
      onRetry: (error, attempt, items, delayMs) =>
        this.logger.warn(
          `insert of ${items} alarm event(s) failed (attempt ${attempt}), retrying in ${delayMs} ms: ${text(error)}`,
        ),
      onFailed: (error, items, retryable) =>
        this.logger.error(
          `insert of ${items.length} alarm event(s) failed for good (${retryable ? 'redelivered later' : 'dead-lettered'}): ${text(error)}`,
        ),
    });
  }

  store(event: AlarmEvent, link?: Link): Promise<void> {
    return this.writer.write({ event, ...(link ? { link } : {}) });
  }

  flushEagerly(): void {
    this.writer.flushEagerly();
  }

  close(): Promise<void> {
    return this.writer.close();
  }

  private async insert(items: readonly Pending[]): Promise<void> {
    const links = items.flatMap(({ link }) => (link ? [link] : [])).slice(0, MAX_LINKS);
    const now = Date.now();
    const rows = items.map(({ event }) => toAlarmRows(event, now));
    // Events first: the alarm row never shows a state its history does not have.
    await this.clickhouse.insertRows(
      ALARM_EVENTS_TABLE,
      rows.map((r) => r.event),
      { links },
    );
    await this.clickhouse.insertRows(
      ALARMS_TABLE,
      rows.map((r) => r.alarm),
      { links },
    );
  }
}

const text = (error: unknown) => (error instanceof Error ? error.message : String(error));
