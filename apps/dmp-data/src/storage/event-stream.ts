import { ClickHouseRepository } from '@dmp/clickhouse';
import { DmpError } from '@dmp/contracts';
import {
  streamConsumerProviders,
  streamController,
  type RocketMqMessage,
  type StreamHandler,
} from '@dmp/messaging';
import { linkTo, MetricsRegistry } from '@dmp/observability';
import type { DynamicModule, Type } from '@nestjs/common';
import type { Counter } from 'prom-client';
import type { ZodType } from 'zod';
import type { EventStreamConfig } from './event-stream.config';
import type { ClickHouseRowWriter } from './row-writer';

/**
 * The event streams dmp-data stores as they come — alarm events, command events: one FIFO topic each,
 * an orderly consumer group of its own, every event validated, batched into ClickHouse, and acknowledged
 * once stored. This is everything they share; a stream adds its schema and its writer (which tables).
 */

export interface EventStream<T> {
  /** `alarm`: metric `dmp_data_alarm_events_total`, /health check `alarms`, controller `AlarmsController`. */
  kind: string;
  /** The contract's name, in errors: `AlarmEvent`. */
  contract: string;
  schema: ZodType<T>;
  /** The error code of an event that does not parse (a bug upstream: dead-lettered, never retried). */
  invalid: string;
  writer: new (clickhouse: ClickHouseRepository, config: EventStreamConfig) => ClickHouseRowWriter<T>;
}

/**
 * The event a RocketMQ message body holds (JSON, checked by `schema`). A body that is not one is a bug
 * upstream: a DmpError with `code`, not retryable (the consumer keeps it as a dead letter).
 */
export function parseEventBody<T>(body: Buffer, schema: ZodType<T>, code: string, name: string): T {
  let json: unknown;
  try {
    json = JSON.parse(body.toString('utf8'));
  } catch (error) {
    throw new DmpError(code, `body is not JSON: ${(error as Error).message}`, false);
  }
  const result = schema.safeParse(json);
  if (result.success) return result.data;
  throw new DmpError(
    code,
    `not a ${name}: ${result.error.issues
      .slice(0, 5)
      .map((i) => `${i.path.join('.') || '(root)'}: ${i.message}`)
      .join('; ')}`,
    false,
  );
}

/** Validates one event, stores it; resolves once it is in ClickHouse (the consumer then acks). */
class EventStreamHandler<T> implements StreamHandler {
  private readonly messages: Counter<'outcome'>;

  constructor(
    private readonly stream: EventStream<T>,
    private readonly writer: ClickHouseRowWriter<T>,
    metrics: MetricsRegistry,
  ) {
    this.messages = metrics.counter(
      `dmp_data_${stream.kind}_events_total`,
      `${stream.kind} events handled, by outcome`,
      ['outcome'],
    );
  }

  async handle(message: RocketMqMessage): Promise<void> {
    let event: T;
    try {
      event = parseEventBody(message.body, this.stream.schema, this.stream.invalid, this.stream.contract);
    } catch (error) {
      this.messages.inc({ outcome: 'invalid' });
      throw error;
    }
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
}

export interface EventStreamModuleOptions {
  rocketmq: { endpoints: string; namespace: string; deadLetterTopic: string };
  topic: string;
  config: EventStreamConfig;
  /** The token its RocketMQ consumer is provided under, connected by bootstrap as a microservice of its own. */
  consumer: symbol;
}

/** The module of one stream: its consumer, handler, writer, dead-letter producer and shutdown. */
export function eventStreamModule<T>(
  module: Type,
  stream: EventStream<T>,
  { rocketmq, topic, config, consumer }: EventStreamModuleOptions,
): DynamicModule {
  const title = `${stream.kind[0].toUpperCase()}${stream.kind.slice(1)}s`;
  const handler = Symbol(`${title}Handler`);
  return {
    module,
    controllers: [streamController(`${title}Controller`, topic, handler)],
    providers: [
      {
        provide: stream.writer,
        inject: [ClickHouseRepository],
        useFactory: (clickhouse: ClickHouseRepository) => new stream.writer(clickhouse, config),
      },
      {
        provide: handler,
        inject: [stream.writer, MetricsRegistry],
        useFactory: (writer: ClickHouseRowWriter<T>, metrics: MetricsRegistry) =>
          new EventStreamHandler(stream, writer, metrics),
      },
      ...streamConsumerProviders({
        rocketmq,
        server: consumer,
        consumer: {
          group: config.consumerGroup,
          topics: [topic],
          pollers: config.pollers,
          maxInFlight: config.maxInFlight,
          maxDeliveryAttempts: config.maxDeliveryAttempts,
        },
        // Events that are no events of the contract (a bug upstream) are kept there, never retried.
        deadLetter: { topic: rocketmq.deadLetterTopic, producer: Symbol(`${title}DeadLetterProducer`) },
        writer: stream.writer,
        health: `${stream.kind}s`,
        logger: title,
        stopped: `${stream.kind} consumer stopped and writer drained`,
      }),
    ],
    exports: [consumer],
  };
}
