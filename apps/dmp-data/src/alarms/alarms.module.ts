import { ClickHouseRepository } from '@dmp/clickhouse';
import { AlarmErrorCode, alarmEventSchema, type AlarmEvent } from '@dmp/contracts';
import { streamConsumerProviders, streamController, type RocketMqMessage } from '@dmp/messaging';
import { linkTo, MetricsRegistry } from '@dmp/observability';
import { Injectable, Module, type DynamicModule } from '@nestjs/common';
import type { Counter } from 'prom-client';
import { parseEventBody } from '../storage/event-body';
import { AlarmWriter } from './alarm.writer';
import { alarmsSection, type AlarmsConfig } from './alarms.config';

/** The token of the RocketMQ consumer of the alarm topic, connected by bootstrap as its own microservice. */
export const ALARM_CONSUMER = Symbol('AlarmConsumer');

/** The producer of dead letters of alarm events that are not AlarmEvents (a bug upstream): kept, never retried. */
const ALARM_DEAD_LETTER_PRODUCER = Symbol('AlarmDeadLetterProducer');

/** One alarm event: validated, then stored; resolves once it is in ClickHouse (the consumer then acks). */
@Injectable()
export class AlarmsService {
  private readonly messages: Counter<'outcome'>;

  constructor(
    private readonly writer: AlarmWriter,
    metrics: MetricsRegistry,
  ) {
    this.messages = metrics.counter('dmp_data_alarm_events_total', 'Alarm events handled, by outcome', [
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

  private parse(message: RocketMqMessage): AlarmEvent {
    try {
      return parseEventBody(message.body, alarmEventSchema, AlarmErrorCode.InvalidAlarmEvent, 'AlarmEvent');
    } catch (error) {
      this.messages.inc({ outcome: 'invalid' });
      throw error;
    }
  }
}

export interface AlarmsModuleOptions {
  rocketmq: { endpoints: string; namespace: string; topics: { alarm: string; deadLetter: string } };
  /** From `alarmsSection`; defaults when absent. */
  alarms?: AlarmsConfig;
}

/**
 * dmp-data's alarm store: every AlarmEvent from `dmp_alarm` (group ALARM_CONSUMER_GROUP, orderly) into
 * ClickHouse `alarm_events` (every transition) and `alarms` (latest state per alarm).
 */
@Module({})
export class AlarmsModule {
  static forRoot(options: AlarmsModuleOptions): DynamicModule {
    const { rocketmq } = options;
    const config = options.alarms ?? alarmsSection.parse({});
    return {
      module: AlarmsModule,
      controllers: [streamController('AlarmsController', rocketmq.topics.alarm, AlarmsService)],
      providers: [
        {
          provide: AlarmWriter,
          inject: [ClickHouseRepository],
          useFactory: (clickhouse: ClickHouseRepository) => new AlarmWriter(clickhouse, config),
        },
        AlarmsService,
        ...streamConsumerProviders({
          rocketmq,
          server: ALARM_CONSUMER,
          consumer: {
            group: config.consumerGroup,
            topics: [rocketmq.topics.alarm],
            pollers: config.pollers,
            maxInFlight: config.maxInFlight,
            maxDeliveryAttempts: config.maxDeliveryAttempts,
          },
          deadLetter: { topic: rocketmq.topics.deadLetter, producer: ALARM_DEAD_LETTER_PRODUCER },
          writer: AlarmWriter,
          health: 'alarms',
          logger: 'Alarms',
          stopped: 'alarm consumer stopped and writer drained',
        }),
      ],
      exports: [ALARM_CONSUMER],
    };
  }
}
