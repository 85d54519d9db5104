import { eventStreamSection, type EventStreamConfig } from '../storage/event-stream.config';

/** Settings of dmp-data's command ledger store (`commands`, `command_events`): `COMMAND_CONSUMER_GROUP`, …; defaults when not loaded. */
export const commandsSection = eventStreamSection('COMMAND', {
  consumerGroup: 'dmp_data_command',
  pollers: 2,
});

export type CommandsConfig = EventStreamConfig;
