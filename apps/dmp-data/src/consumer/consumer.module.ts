import { RocketMqConsumerServer, RocketMqProducer } from '@dmp/messaging';
import { HealthRegistry, MetricsRegistry } from '@dmp/observability';
import {
  Injectable,
  Logger,
  Module,
  type BeforeApplicationShutdown,
  type DynamicModule,
  type OnApplicationShutdown,
  type OnModuleInit,
} from '@nestjs/common';
import type { DataConfig } from '../config';
import { StorageModule } from '../storage/storage.module';
import { TelemetryBatchWriter } from '../storage/telemetry-batch-writer';
import { telemetryConsumerController } from './telemetry-consumer.controller';
import { TelemetryConsumer } from './telemetry-consumer.service';

/** Publishes what cannot be stored to the dead-letter topic. */
export class DeadLetterProducer extends RocketMqProducer {}

/**
 * Start and stop order: the dead-letter producer starts with the modules (before the consumer is
 * connected); on shutdown the consumer stops receiving and settles what it holds while the
 * writer flushes eagerly, then the writer drains the rest, then the producer stops.
 */
@Injectable()
class ConsumerLifecycle implements OnModuleInit, BeforeApplicationShutdown, OnApplicationShutdown {
  private readonly logger = new Logger('DataLifecycle');

  constructor(
    private readonly server: RocketMqConsumerServer,
    private readonly producer: DeadLetterProducer,
    private readonly writer: TelemetryBatchWriter,
    private readonly health: HealthRegistry,
  ) {}

  async onModuleInit(): Promise<void> {
    this.health.register('rocketmq', () => ({
      up: this.server.isReady() && this.producer.isReady(),
      detail: {
        consumer: this.server.isReady(),
        deadLetterProducer: this.producer.isReady(),
        inFlight: this.server.inFlight,
      },
    }));
    await this.producer.start();
  }

  async beforeApplicationShutdown(): Promise<void> {
    this.logger.log(
      `stopping: ${this.server.inFlight} message(s) in flight, ${this.writer.heldRows} held by the writer`,
    );
    this.writer.flushEagerly();
    await this.server.close();
    await this.writer.close();
    this.logger.log('consumer stopped and writer drained');
  }

  async onApplicationShutdown(): Promise<void> {
    await this.producer.stop();
  }
}

/** The RocketMQ consumer of both telemetry topics, wired to the ClickHouse writer. */
@Module({})
export class ConsumerModule {
  static forRoot(config: DataConfig): DynamicModule {
    const { rocketmq, data } = config;
    const topics = [rocketmq.topics.event, rocketmq.topics.snapshot];
    return {
      module: ConsumerModule,
      imports: [StorageModule],
      controllers: [telemetryConsumerController(topics)],
      providers: [
        TelemetryConsumer,
        ConsumerLifecycle,
        {
          provide: DeadLetterProducer,
          inject: [MetricsRegistry],
          useFactory: (metrics: MetricsRegistry) =>
            new DeadLetterProducer({
              endpoints: rocketmq.endpoints,
              namespace: rocketmq.namespace,
              topics: [rocketmq.topics.deadLetter],
              serviceName: 'dmp-data',
              metrics,
            }),
        },
        {
          provide: RocketMqConsumerServer,
          inject: [MetricsRegistry, DeadLetterProducer],
          useFactory: (metrics: MetricsRegistry, producer: DeadLetterProducer) =>
            new RocketMqConsumerServer({
              endpoints: rocketmq.endpoints,
              namespace: rocketmq.namespace,
              group: data.consumerGroup,
              topics,
              invisibleMs: data.invisibleMs,
              maxInFlight: data.maxInFlight,
              pollers: data.pollers,
              maxDeliveryAttempts: data.maxDeliveryAttempts,
              deadLetterTopic: rocketmq.topics.deadLetter,
              producer,
              metrics,
            }),
        },
      ],
      exports: [RocketMqConsumerServer],
    };
  }
}
