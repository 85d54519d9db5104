import type { RocketMqProducer } from '@dmp/messaging';
import { MetricsRegistry } from '@dmp/observability';
import type { InjectionToken, Provider } from '@nestjs/common';
import { DATA_CONFIG, type DataConfig } from '../config';
import { TelemetryCleaner } from './telemetry-cleaner.service';

/**
 * The provider of {@link TelemetryCleaner}, for the module that owns the telemetry consumer: the cleaner
 * sends its dead letters with that consumer's dead-letter producer (`producer`, its token — one
 * RocketMQ connection, started before the consumer and stopped after it drained). A module of its own
 * could not see that provider, hence providers to spread into the consumer module's:
 *
 * ```ts
 * providers: [TelemetryConsumer, ...cleaningProviders(DEAD_LETTER_PRODUCER), ...streamConsumerProviders({…})]
 * ```
 */
export function cleaningProviders(producer: InjectionToken): Provider[] {
  return [
    {
      provide: TelemetryCleaner,
      inject: [DATA_CONFIG, MetricsRegistry, producer],
      useFactory: (config: DataConfig, metrics: MetricsRegistry, deadLetters: RocketMqProducer) =>
        new TelemetryCleaner({
          limits: config.cleaning,
          deadLetterTopic: config.rocketmq.topics.deadLetter,
          instance: config.data.consumerGroup,
          producer: deadLetters,
          metrics,
        }),
    },
  ];
}
