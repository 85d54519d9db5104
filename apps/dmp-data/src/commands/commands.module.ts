import { ClickHouseRepository } from '@dmp/clickhouse';
import { CommandErrorCode, commandEventSchema, type CommandEvent } from '@dmp/contracts';
import { streamConsumerProviders, streamController, type RocketMqMessage } from '@dmp/messaging';
import { linkTo, MetricsRegistry } from '@dmp/observability';
import { Injectable, Module, type DynamicModule } from '@nestjs/common';
import type { Counter } from 'prom-client';
import { parseEventBody } from '../storage/event-body';
import { CommandWriter } from './command.writer';
import { commandsSection, type CommandsConfig } from './commands.config';

/** The token of the RocketMQ consumer of the command topic, connected by bootstrap as its own microservice. */
export const COMMAND_CONSUMER = Symbol('CommandConsumer');

/** The producer of dead letters of command events that are not CommandEvents (a bug upstream): kept, never retried. */
const COMMAND_DEAD_LETTER_PRODUCER = Symbol('CommandDeadLetterProducer');

/** One command event: validated, then stored; resolves once it is in ClickHouse (the consumer then acks). */
@Injectable()
export class CommandsService {
  private readonly messages: Counter<'outcome'>;

  constructor(
    private readonly writer: CommandWriter,
    metrics: MetricsRegistry,
  ) {
    this.messages = metrics.counter('dmp_data_command_events_total', 'Command events handled, by outcome', [
      'outcome',
    ]);
  }

  async handle(message: RocketMqMessage): Promise<void> {
    const event = this.parse(message);
    try {
      await this.writer.store(
        event,
        linkTo({ traceparent: message.properties.traceparent, tracestate: message.properties.tracestate }),
      );
      this.messages.inc({ outcome: 'stored' });
    } catch (error) {
      this.messages.inc({ outcome: 'failed' });
      throw error;
    }
  }

  private parse(message: RocketMqMessage): CommandEvent {
    try {
      return parseEventBody(message.body, commandEventSchema, CommandErrorCode.InvalidEvent, 'CommandEvent');
    } catch (error) {
      this.messages.inc({ outcome: 'invalid' });
      throw error;
    }
  }
}

export interface CommandsModuleOptions {
  rocketmq: { endpoints: string; namespace: string; topics: { command: string; deadLetter: string } };
  /** From `commandsSection`; defaults when absent. */
  commands?: CommandsConfig;
}

/**
 * dmp-data's command ledger store: every CommandEvent from `dmp_command` (group COMMAND_CONSUMER_GROUP, orderly) into
 * ClickHouse `command_events` (every transition) and `commands` (latest state per command).
 */
@Module({})
export class CommandsModule {
  static forRoot(options: CommandsModuleOptions): DynamicModule {
    const { rocketmq } = options;
    const config = options.commands ?? commandsSection.parse({});
    return {
      module: CommandsModule,
      controllers: [streamController('CommandsController', rocketmq.topics.command, CommandsService)],
      providers: [
        {
          provide: CommandWriter,
          inject: [ClickHouseRepository],
          useFactory: (clickhouse: ClickHouseRepository) => new CommandWriter(clickhouse, config),
        },
        CommandsService,
        ...streamConsumerProviders({
          rocketmq,
          server: COMMAND_CONSUMER,
          consumer: {
            group: config.consumerGroup,
            topics: [rocketmq.topics.command],
            pollers: config.pollers,
            maxInFlight: config.maxInFlight,
            maxDeliveryAttempts: config.maxDeliveryAttempts,
          },
          deadLetter: { topic: rocketmq.topics.deadLetter, producer: COMMAND_DEAD_LETTER_PRODUCER },
          writer: CommandWriter,
          health: 'commands',
          logger: 'Commands',
          stopped: 'command consumer stopped and writer drained',
        }),
      ],
      exports: [COMMAND_CONSUMER],
    };
  }
}
