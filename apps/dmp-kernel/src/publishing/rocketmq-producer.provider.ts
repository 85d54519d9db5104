import { RocketMqProducer } from '@dmp/messaging';
import { HealthRegistry, MetricsRegistry } from '@dmp/observability';
import {
  Inject,
  Injectable,
  Logger,
  type OnApplicationShutdown,
  type OnModuleInit,
  type Provider,
} from '@nestjs/common';
import { KERNEL_CONFIG, type KernelConfig } from '../config';

export const rocketMqProducerProvider: Provider = {
  provide: RocketMqProducer,
  inject: [KERNEL_CONFIG, MetricsRegistry],
  useFactory: (config: KernelConfig, metrics: MetricsRegistry) =>
    new RocketMqProducer({
      endpoints: config.rocketmq.endpoints,
      namespace: config.rocketmq.namespace,
      // Telemetry, and alarm events of the rules; topics that rules route to are looked up when first used.
      topics: [config.rocketmq.topics.event, config.rocketmq.topics.snapshot, config.rocketmq.topics.alarm],
      serviceName: 'dmp-kernel',
      logger: new Logger('RocketMqProducer'),
      metrics,
    }),
};

/**
 * Connects the producer before the gRPC server takes calls, and stops it last: Nest closes the
 * gRPC server (which waits for in-flight Ingest calls, hence their sends) before
 * `onApplicationShutdown`.
 */
@Injectable()
export class RocketMqProducerLifecycle implements OnModuleInit, OnApplicationShutdown {
  constructor(
    private readonly producer: RocketMqProducer,
    private readonly health: HealthRegistry,
    @Inject(KERNEL_CONFIG) private readonly config: KernelConfig,
  ) {}

  async onModuleInit(): Promise<void> {
    this.health.register('rocketmq', () => ({
      up: this.producer.isReady(),
      detail: { endpoints: this.config.rocketmq.endpoints },
    }));
    await this.producer.start();
  }

  async onApplicationShutdown(): Promise<void> {
    await this.producer.stop();
  }
}
