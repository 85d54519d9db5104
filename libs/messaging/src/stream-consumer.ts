import { HealthRegistry, MetricsRegistry } from '@dmp/observability';
import {
  Controller,
  Inject,
  Logger,
  UseFilters,
  type BeforeApplicationShutdown,
  type InjectionToken,
  type OnApplicationShutdown,
  type OnModuleInit,
  type Provider,
  type Type,
} from '@nestjs/common';
import { EventPattern, Payload } from '@nestjs/microservices';
import { RocketMqConsumerServer, type RocketMqConsumerServerOptions } from './rocketmq.consumer-server';
import { ROCKETMQ_TRANSPORT, type RocketMqMessage } from './rocketmq.context';
import { RocketMqExceptionFilter } from './rocketmq.exception-filter';
import { RocketMqProducer } from './rocketmq.producer';

/** Handles one message; resolves once it is stored (the consumer then acks). */
export interface StreamHandler {
  handle(message: RocketMqMessage): Promise<void>;
}

/** What a stream's messages are stored by, drained on shutdown after the consumer stopped. */
export interface StreamWriter {
  flushEagerly(): void;
  close(): Promise<void>;
}

/**
 * The handler of a stream's topics. Topic names are configuration (ROCKETMQ_TOPIC_*) while
 * `@EventPattern` needs them when the class is declared, so the controller is declared per stream
 * when its module is built.
 */
export function streamController(
  name: string,
  topics: string | string[],
  handler: InjectionToken<StreamHandler>,
): Type<unknown> {
  @Controller()
  @UseFilters(RocketMqExceptionFilter)
  class StreamController {
    constructor(@Inject(handler) private readonly handler: StreamHandler) {}

    @EventPattern(topics, ROCKETMQ_TRANSPORT)
    onMessage(@Payload() message: RocketMqMessage): Promise<void> {
      return this.handler.handle(message);
    }
  }
  Object.defineProperty(StreamController, 'name', { value: name });
  return StreamController;
}

export interface StreamConsumerOptions<W extends StreamWriter> {
  rocketmq: { endpoints: string; namespace: string };
  /**
   * The token the stream's RocketMqConsumerServer is provided under: one per stream, so that bootstrap
   * can connect each as a microservice of its own — `app.connectMicroservice({ strategy: app.get(token) })`.
   */
  server: InjectionToken;
  /** Group, topics and limits of the consumer. */
  consumer: Omit<
    RocketMqConsumerServerOptions,
    'endpoints' | 'namespace' | 'deadLetterTopic' | 'producer' | 'metrics'
  >;
  /**
   * Where the consumer sends what the handler refuses, with a RocketMqProducer of its own provided under
   * `producer` (none: retried only).
   */
  deadLetter?: { topic: string; producer: InjectionToken };
  /** The writer drained on shutdown (its provider is the module's own). */
  writer: Type<W>;
  /** Name of the stream's /health check. */
  health: string;
  /** /health detail; `{ inFlight }` by default. */
  healthDetail?: (server: RocketMqConsumerServer, producer?: RocketMqProducer) => Record<string, unknown>;
  /** Logger context of start and stop. */
  logger: string;
  /** Logged when shutdown begins. */
  stopping?: (server: RocketMqConsumerServer, writer: W) => string;
  /** Logged once the consumer stopped and the writer drained. */
  stopped: string;
}

/**
 * Start and stop order: the dead-letter producer (if any) starts with the modules, before bootstrap
 * connects the consumer; on shutdown the consumer stops receiving and settles what it holds while the
 * writer flushes eagerly, then the writer drains the rest, then the producer stops.
 */
class StreamLifecycle<W extends StreamWriter>
  implements OnModuleInit, BeforeApplicationShutdown, OnApplicationShutdown
{
  private readonly logger: Logger;

  constructor(
    private readonly options: StreamConsumerOptions<W>,
    private readonly server: RocketMqConsumerServer,
    private readonly writer: W,
    private readonly health: HealthRegistry,
    private readonly producer?: RocketMqProducer,
  ) {
    this.logger = new Logger(options.logger);
  }

  async onModuleInit(): Promise<void> {
    const { server, producer } = this;
    this.health.register(this.options.health, () => ({
      up: server.isReady() && (producer?.isReady() ?? true),
      detail: this.options.healthDetail?.(server, producer) ?? { inFlight: server.inFlight },
    }));
    await producer?.start();
  }

  async beforeApplicationShutdown(): Promise<void> {
    if (this.options.stopping) this.logger.log(this.options.stopping(this.server, this.writer));
    this.writer.flushEagerly();
    await this.server.close();
    await this.writer.close();
    this.logger.log(this.options.stopped);
  }

  async onApplicationShutdown(): Promise<void> {
    await this.producer?.stop();
  }
}

/**
 * The providers of a RocketMQ stream dmp-data stores: its consumer server, its dead-letter producer
 * (optional) and the lifecycle that starts and drains them with the stream's writer. The module adds
 * the writer, the handler and `streamController(…)`, and exports `options.server` for bootstrap.
 */
export function streamConsumerProviders<W extends StreamWriter>(
  options: StreamConsumerOptions<W>,
): Provider[] {
  const { rocketmq, server, consumer, deadLetter, writer } = options;
  const producers: Provider[] = deadLetter
    ? [
        {
          provide: deadLetter.producer,
          inject: [MetricsRegistry],
          useFactory: (metrics: MetricsRegistry) =>
            new RocketMqProducer({
              endpoints: rocketmq.endpoints,
              namespace: rocketmq.namespace,
              topics: [deadLetter.topic],
              serviceName: 'dmp-data',
              metrics,
            }),
        },
      ]
    : [];
  const withProducer = deadLetter ? [deadLetter.producer] : [];
  return [
    ...producers,
    {
      provide: server,
      inject: [MetricsRegistry, ...withProducer],
      useFactory: (metrics: MetricsRegistry, producer?: RocketMqProducer) =>
        new RocketMqConsumerServer({
          endpoints: rocketmq.endpoints,
          namespace: rocketmq.namespace,
          ...consumer,
          ...(deadLetter ? { deadLetterTopic: deadLetter.topic, producer } : {}),
          metrics,
        }),
    },
    {
      provide: Symbol(`${options.health} lifecycle`),
      inject: [server, writer, HealthRegistry, ...withProducer],
      useFactory: (
        server: RocketMqConsumerServer,
        w: W,
        health: HealthRegistry,
        producer?: RocketMqProducer,
      ) => new StreamLifecycle(options, server, w, health, producer),
    },
  ];
}
