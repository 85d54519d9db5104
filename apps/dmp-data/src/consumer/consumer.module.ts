import { streamConsumerProviders, streamController } from '@dmp/messaging';
import { Module, type DynamicModule } from '@nestjs/common';
import { cleaningProviders } from '../cleaning/cleaning.providers';
import type { DataConfig } from '../config';
import { StorageModule } from '../storage/storage.module';
import { TelemetryBatchWriter } from '../storage/telemetry-batch-writer';
import { TelemetryConsumer } from './telemetry-consumer.service';

/** The token of the RocketMQ consumer of both telemetry topics, connected by bootstrap. */
export const TELEMETRY_CONSUMER = Symbol('TelemetryConsumer');

/** The token of the producer that publishes what cannot be stored to the dead-letter topic. */
const DEAD_LETTER_PRODUCER = Symbol('DeadLetterProducer');

/** The RocketMQ consumer of both telemetry topics, wired to the ClickHouse writer. */
@Module({})
export class ConsumerModule {
  static forRoot(config: DataConfig): DynamicModule {
    const { rocketmq, data } = config;
    const topics = [rocketmq.topics.event, rocketmq.topics.snapshot];
    return {
      module: ConsumerModule,
      imports: [StorageModule],
      controllers: [streamController('TelemetryConsumerController', [...topics], TelemetryConsumer)],
      providers: [
        TelemetryConsumer,
        ...cleaningProviders(DEAD_LETTER_PRODUCER),
        ...streamConsumerProviders({
          rocketmq,
          server: TELEMETRY_CONSUMER,
          consumer: {
            group: data.consumerGroup,
            topics,
            invisibleMs: data.invisibleMs,
            maxInFlight: data.maxInFlight,
            pollers: data.pollers,
            maxDeliveryAttempts: data.maxDeliveryAttempts,
            // Rows are keyed by message and versioned by device time: storing needs no order, and a
            // shard's packs of one receive go into the same ClickHouse batches instead of one each.
            groupOrder: false,
          },
          deadLetter: { topic: rocketmq.topics.deadLetter, producer: DEAD_LETTER_PRODUCER },
          writer: TelemetryBatchWriter,
          health: 'rocketmq',
          healthDetail: (server, producer) => ({
            consumer: server.isReady(),
            deadLetterProducer: producer?.isReady(),
            inFlight: server.inFlight,
          }),
          logger: 'DataLifecycle',
          stopping: (server, writer) =>
            `stopping: ${server.inFlight} message(s) in flight, ${writer.heldRows} held by the writer`,
          stopped: 'consumer stopped and writer drained',
        }),
      ],
      exports: [TELEMETRY_CONSUMER],
    };
  }
}
