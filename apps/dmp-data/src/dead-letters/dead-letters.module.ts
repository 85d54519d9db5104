import { ClickHouseRepository } from '@dmp/clickhouse';
import { streamConsumerProviders, streamController } from '@dmp/messaging';
import { MetricsRegistry } from '@dmp/observability';
import { Module, type DynamicModule } from '@nestjs/common';
import { DeadLetterWriter } from './dead-letter.writer';
import { deadLettersSection, type DeadLettersConfig } from './dead-letters.config';
import { DeadLettersService } from './dead-letters.service';

/**
 * The token of the RocketMQ consumer of the dead-letter topic (its own group, DEAD_LETTER_CONSUMER_GROUP),
 * which the app connects as a microservice of its own next to the telemetry consumer —
 * `app.connectMicroservice({ strategy: app.get(DEAD_LETTER_CONSUMER) }, { inheritAppConfig: true })`.
 * It has no dead-letter topic itself: a dead letter that cannot be stored must not go back to the topic
 * it came from, nor be dropped. It is redelivered (backoff up to DEAD_LETTER_MAX_RETRY_DELAY_MS) until
 * ClickHouse takes it; only past the group's retry_max_times (docker/rocketmq/groups.txt: 100000, months
 * of retries) would the broker move it to `%DLQ%<group>`.
 */
export const DEAD_LETTER_CONSUMER = Symbol('DeadLetterConsumer');

export interface DeadLettersModuleOptions {
  rocketmq: { endpoints: string; namespace: string; topics: { deadLetter: string } };
  /** From `deadLettersSection` in the app's config; defaults when absent. */
  deadLetters?: DeadLettersConfig;
}

/**
 * dmp-data's dead-letter store: every message on the dead-letter topic (refused by dmp-mqtt, or given up
 * by a consumer) into ClickHouse `dead_letters`, for `dmp dead-letters list | replay`.
 */
@Module({})
export class DeadLettersModule {
  static forRoot(options: DeadLettersModuleOptions): DynamicModule {
    const { rocketmq } = options;
    const config = options.deadLetters ?? deadLettersSection.parse({});
    const topic = rocketmq.topics.deadLetter;
    return {
      module: DeadLettersModule,
      controllers: [streamController('DeadLettersController', topic, DeadLettersService)],
      providers: [
        {
          provide: DeadLetterWriter,
          inject: [ClickHouseRepository],
          useFactory: (clickhouse: ClickHouseRepository) => new DeadLetterWriter(clickhouse, config),
        },
        {
          provide: DeadLettersService,
          inject: [DeadLetterWriter, MetricsRegistry],
          useFactory: (writer: DeadLetterWriter, metrics: MetricsRegistry) =>
            new DeadLettersService(writer, metrics),
        },
        ...streamConsumerProviders({
          rocketmq,
          server: DEAD_LETTER_CONSUMER,
          consumer: {
            group: config.consumerGroup,
            topics: [topic],
            pollers: config.pollers,
            maxInFlight: config.maxInFlight,
            maxRetryDelayMs: config.maxRetryDelayMs,
          },
          writer: DeadLetterWriter,
          health: 'dead-letters',
          logger: 'DeadLetters',
          stopped: 'dead-letter consumer stopped and writer drained',
        }),
      ],
      exports: [DEAD_LETTER_CONSUMER],
    };
  }
}
