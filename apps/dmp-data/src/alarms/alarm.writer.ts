import { ClickHouseRepository } from '@dmp/clickhouse';
import { ALARM_EVENTS_TABLE, ALARM_EXPLANATIONS_TABLE, ALARMS_TABLE, type AlarmEvent } from '@dmp/contracts';
import { ClickHouseRowWriter } from '../storage/row-writer';
import type { AlarmsConfig } from './alarms.config';
import { toAlarmRows } from './alarm-rows';

/**
 * Batches alarm events into `alarm_explanations`, `alarm_events` then `alarms` (both ReplacingMergeTree: a redelivered event
 * replaces itself); `store` resolves once both inserts of its batch succeeded (the consumer then acks).
 */
export class AlarmWriter extends ClickHouseRowWriter<AlarmEvent> {
  constructor(clickhouse: ClickHouseRepository, config: AlarmsConfig) {
    super(clickhouse, {
      name: 'AlarmWriter',
      items: 'alarm event(s)',
      refused: 'dead-lettered',
      batch: config.batch,
      insert: async (clickhouse, events, links) => {
        const now = Date.now();
        const rows = events.map((event) => toAlarmRows(event, now));
        // Explanations and events first: the alarm row never shows a state its history does not have.
        await clickhouse.insertRows(
          ALARM_EXPLANATIONS_TABLE,
          rows.map((r) => r.explanation),
          { links },
        );
        await clickhouse.insertRows(
          ALARM_EVENTS_TABLE,
          rows.map((r) => r.event),
          { links },
        );
        await clickhouse.insertRows(
          ALARMS_TABLE,
          rows.map((r) => r.alarm),
          { links },
        );
      },
    });
  }
}
