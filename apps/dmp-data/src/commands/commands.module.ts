import { CommandErrorCode, commandEventSchema } from '@dmp/contracts';
import { Module, type DynamicModule } from '@nestjs/common';
import { eventStreamModule } from '../storage/event-stream';
import { CommandWriter } from './command.writer';
import { commandsSection, type CommandsConfig } from './commands.config';

/** The token of the RocketMQ consumer of the command topic, connected by bootstrap as its own microservice. */
export const COMMAND_CONSUMER = Symbol('CommandConsumer');

export interface CommandsModuleOptions {
  rocketmq: { endpoints: string; namespace: string; topics: { command: string; deadLetter: string } };
  /** From `commandsSection`; defaults when absent. */
  commands?: CommandsConfig;
}

/**
 * dmp-data's command ledger store: every CommandEvent from `dmp_command` (group COMMAND_CONSUMER_GROUP,
 * orderly) into ClickHouse `command_events` (every transition) and `commands` (latest state per command).
 */
@Module({})
export class CommandsModule {
  static forRoot({ rocketmq, commands }: CommandsModuleOptions): DynamicModule {
    return eventStreamModule(
      CommandsModule,
      {
        kind: 'command',
        contract: 'CommandEvent',
        schema: commandEventSchema,
        invalid: CommandErrorCode.InvalidEvent,
        writer: CommandWriter,
      },
      {
        rocketmq: { ...rocketmq, deadLetterTopic: rocketmq.topics.deadLetter },
        topic: rocketmq.topics.command,
        config: commands ?? commandsSection.parse({}),
        consumer: COMMAND_CONSUMER,
      },
    );
  }
}
