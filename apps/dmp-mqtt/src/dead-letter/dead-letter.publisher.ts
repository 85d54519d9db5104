import { RocketMqProducer } from '@dmp/messaging';
import { HealthRegistry, injectTraceContext, MetricsRegistry } from '@dmp/observability';
import { Inject, Injectable, Logger, type OnApplicationShutdown, type OnModuleInit } from '@nestjs/common';
import { context, ROOT_CONTEXT, trace, type Link } from '@opentelemetry/api';
import type { Counter, Histogram } from 'prom-client';
import { MQTT_APP_CONFIG, type MqttAppConfig } from '../config';
import {
  toDeadLetterBatch,
  toPackedDeadLetter,
  type PackedDeadLetter,
  type RefusedMessage,
} from './dead-letter';
import { DeadLetterBatcher, type DeadLetterOutcome } from './dead-letter-batcher';

export type { DeadLetterOutcome } from './dead-letter-batcher';

const FAILURE_LOG_INTERVAL_MS = 10_000;
/** A send span links at most this many of the messages it carries (OpenTelemetry's default cap is 128). */
const MAX_LINKS = 128;

interface Letter extends PackedDeadLetter {
  link?: Link;
}

/**
 * Sends refused device messages, with their raw payload, to the dead-letter topic before they are
 * acknowledged — nothing refused is lost. At most DEAD_LETTER_MAX_CONCURRENT_SENDS sends are in flight;
 * refused messages arriving meanwhile are packed, per reason code, into the next sends (a
 * `DeadLetterBatch` of up to DEAD_LETTER_PACK_MAX_MESSAGES / _BYTES each), so a flood of bad input costs
 * a few round trips instead of one per message, and cannot swamp RocketMQ's connection: a good message
 * whose PUBACK waits behind refused ones (PUBACKs go out in arrival order) waits for a few batched sends.
 * While RocketMQ is down a send is retried (backoff up to 5 s) until the delivery's signal aborts:
 * refused messages then wait unacknowledged like good ones wait for dmp-kernel, and the transport's
 * Receive Maximum stops intake — nothing is dropped.
 */
@Injectable()
export class DeadLetterPublisher implements OnModuleInit, OnApplicationShutdown {
  private readonly log = new Logger('DeadLetterPublisher');
  private readonly producer: RocketMqProducer;
  private readonly topic: string;
  private readonly instance: string;
  private readonly batcher: DeadLetterBatcher<Letter>;
  private readonly deadLettered: Counter<'reason'>;
  private readonly failures: Counter<'kind'>;
  private readonly batchSize: Histogram;
  private readonly waitSeconds: Histogram;
  private lastFailureLogAt = 0;

  constructor(
    @Inject(MQTT_APP_CONFIG) config: MqttAppConfig,
    metrics: MetricsRegistry,
    health: HealthRegistry,
  ) {
    this.topic = config.rocketmq.topics.deadLetter;
    this.instance = config.ingest.clientId;
    this.producer = new RocketMqProducer({
      endpoints: config.rocketmq.endpoints,
      namespace: config.rocketmq.namespace,
      topics: [this.topic],
      serviceName: 'dmp-mqtt',
      logger: new Logger('RocketMqProducer'),
      metrics,
    });
    this.batcher = new DeadLetterBatcher<Letter>(config.deadLetter, {
      groupOf: (letter) => letter.code,
      sizeOf: (letter) => letter.size,
      send: (letters) => this.send(letters),
      onSent: (letters, waitedMs) => this.onSent(letters, waitedMs),
      onRetry: (error, attempt, letters, delayMs) => this.onRetry(error, attempt, letters, delayMs),
      onRefused: (error, letter) => this.onRefused(error, letter),
    });
    this.deadLettered = metrics.counter(
      'dmp_mqtt_dead_lettered_total',
      'Refused device messages stored in the dead-letter topic, by DMP_ERR_* code',
      ['reason'],
    );
    this.failures = metrics.counter(
      'dmp_mqtt_dead_letter_failures_total',
      'Dead-letter sends that failed: retried (transient) or given up (refused by RocketMQ; then per message)',
      ['kind'],
    );
    this.batchSize = metrics.histogram(
      'dmp_mqtt_dead_letter_batch_messages',
      'Refused messages per dead-letter send (one RocketMQ message)',
      [],
      [1, 2, 5, 10, 25, 50, 100, 250, 500, 1000],
    );
    this.waitSeconds = metrics.histogram(
      'dmp_mqtt_dead_letter_wait_seconds',
      'From a refusal to its dead letter stored (the oldest of each send): what it adds to the PUBACKs behind it',
    );
    const batcher = this.batcher;
    metrics.gauge(
      'dmp_mqtt_dead_letter_queued',
      'Refused messages waiting for a dead-letter send (bounded by MQTT_RECEIVE_MAXIMUM)',
      [],
      function () {
        this.set(batcher.queued);
      },
    );
    metrics.gauge(
      'dmp_mqtt_dead_letter_in_flight',
      'Refused messages in dead-letter sends in flight (including sends waiting to retry)',
      [],
      function () {
        this.set(batcher.inFlight);
      },
    );
    metrics.gauge(
      'dmp_mqtt_dead_letter_sends_in_flight',
      'Dead-letter sends in flight (at most DEAD_LETTER_MAX_CONCURRENT_SENDS)',
      [],
      function () {
        this.set(batcher.sendsInFlight);
      },
    );
    health.register('rocketmq', () => ({
      up: this.producer.isReady(),
      detail: {
        endpoints: config.rocketmq.endpoints,
        topic: this.topic,
        deadLettersQueued: batcher.queued,
        deadLettersInFlight: batcher.inFlight,
      },
    }));
  }

  /** Before the transport listens (startAllMicroservices runs after init). */
  async onModuleInit(): Promise<void> {
    await this.producer.start();
  }

  /** After the transport drained (beforeApplicationShutdown): whatever still waits is left for redelivery. */
  async onApplicationShutdown(): Promise<void> {
    this.batcher.close();
    await this.producer.stop();
  }

  /**
   * Resolves once the refused message's dead letter is stored (`sent`), refused for good by RocketMQ
   * (`refused`, logged), or the delivery ended first (`aborted`). Call it in the message's trace context:
   * the entry carries it, and the send span links to it.
   */
  publish(refused: Omit<RefusedMessage, 'instance'>, signal: AbortSignal): Promise<DeadLetterOutcome> {
    const active = context.active();
    const spanContext = trace.getSpanContext(active);
    const letter: Letter = {
      ...toPackedDeadLetter({ ...refused, instance: this.instance }, injectTraceContext(active).traceparent),
      ...(spanContext ? { link: { context: spanContext } } : {}),
    };
    return this.batcher.add(letter, signal);
  }

  private async send(letters: readonly Letter[]): Promise<void> {
    const message = toDeadLetterBatch(this.topic, this.instance, letters);
    message.links = letters.flatMap((l) => (l.link ? [l.link] : [])).slice(0, MAX_LINKS);
    // A batch belongs to no single message's trace: its send span is a root, linked to each message.
    await context.with(ROOT_CONTEXT, () => this.producer.send(message));
  }

  private onSent(letters: readonly Letter[], waitedMs: number): void {
    this.batchSize.observe(letters.length);
    this.waitSeconds.observe(waitedMs / 1000);
    for (const letter of letters) this.deadLettered.inc({ reason: letter.code });
  }

  private onRetry(error: unknown, attempt: number, letters: readonly Letter[], delayMs: number): void {
    this.failures.inc({ kind: 'retried' });
    const now = Date.now();
    if (now - this.lastFailureLogAt < FAILURE_LOG_INTERVAL_MS) return;
    this.lastFailureLogAt = now;
    this.log.warn(
      `dead-letter send of ${letters.length} refused message(s) (${letters[0]?.code}) failed (attempt ${attempt}), ` +
        `retrying in ${Math.round(delayMs)} ms; ${this.batcher.queued} waiting, ${this.batcher.inFlight} in flight, ` +
        `their PUBACKs (and those behind them) wait: ${(error as Error).message}`,
    );
  }

  private onRefused(error: unknown, letter: Letter): void {
    this.failures.inc({ kind: 'refused' });
    const { properties, payload } = letter.entry;
    this.log.error(
      `RocketMQ refused the dead letter of a ${letter.code} message from ${properties.dmp_source_topic} ` +
        `(${payload.length} bytes, payload head ${payload.subarray(0, 64).toString('base64')}): ` +
        (error as Error).message,
    );
  }
}
