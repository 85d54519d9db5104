import { ClickHouseRepository } from '@dmp/clickhouse';
import { COMMAND_EVENTS_TABLE, COMMANDS_TABLE, type CommandEvent } from '@dmp/contracts';
import { ClickHouseRowWriter } from '../storage/row-writer';
import type { CommandsConfig } from './commands.config';
import { toCommandRows } from './command-rows';

/**
 * Batches command events into `command_events` then `commands` (both ReplacingMergeTree: a redelivered
 * event replaces itself); `store` resolves once both inserts of its batch succeeded (the consumer then acks).
 */
export class CommandWriter extends ClickHouseRowWriter<CommandEvent> {
  constructor(clickhouse: ClickHouseRepository, config: CommandsConfig) {
    super(clickhouse, {
      name: 'CommandWriter',
      items: 'command event(s)',
      refused: 'dead-lettered',
      batch: config.batch,
      insert: async (clickhouse, events, links) => {
        const now = Date.now();
        const rows = events.map((event) => toCommandRows(event, now));
        // Events first: the command row never shows a state its history does not have.
        await clickhouse.insertRows(
          COMMAND_EVENTS_TABLE,
          rows.map((r) => r.event),
          { links },
        );
        await clickhouse.insertRows(
          COMMANDS_TABLE,
          rows.map((r) => r.command),
          { links },
        );
      },
    });
  }
}
