import { DmpError } from '@dmp/contracts';
import { RocketMqProducer } from '@dmp/messaging';
import { HealthRegistry, MetricsRegistry } from '@dmp/observability';
import { Inject, Injectable, Logger, type OnApplicationShutdown, type OnModuleInit } from '@nestjs/common';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Counter } from 'prom-client';
import { MQTT_APP_CONFIG, type MqttAppConfig } from '../config';
import { toDeadLetter, type RefusedMessage } from './dead-letter';

/** How a dead-letter hand-off ended. */
export type DeadLetterOutcome =
  /** Stored in RocketMQ: the message may be acknowledged. */
  | 'sent'
  /** RocketMQ refuses this message for good (e.g. too large): acknowledged anyway, logged with the details. */
  | 'refused'
  /** The delivery can no longer be acknowledged (connection lost, shutdown): the broker redelivers it. */
  | 'aborted';

const RETRY_BASE_MS = 100;
const RETRY_MAX_MS = 5_000;
const FAILURE_LOG_INTERVAL_MS = 10_000;

/**
 * Sends refused device messages, with their raw payload, to the dead-letter topic before they are
 * acknowledged — nothing refused is lost. Sends run concurrently (one per refused message), so a refused
 * message costs only its own send; a good message behind it waits at most for that send, because PUBACKs
 * go out in arrival order. While RocketMQ is down a send is retried (backoff up to 5 s) until the
 * delivery's signal aborts: refused messages then wait unacknowledged like good ones wait for
 * dmp-kernel, and the transport's Receive Maximum stops intake — nothing is dropped.
 */
@Injectable()
export class DeadLetterPublisher implements OnModuleInit, OnApplicationShutdown {
  private readonly log = new Logger('DeadLetterPublisher');
  private readonly producer: RocketMqProducer;
  private readonly topic: string;
  private readonly instance: string;
  private readonly deadLettered: Counter<'reason'>;
  private readonly failures: Counter<'kind'>;
  private failing = 0;
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
    this.deadLettered = metrics.counter(
      'dmp_mqtt_dead_lettered_total',
      'Refused device messages stored in the dead-letter topic, by DMP_ERR_* code',
      ['reason'],
    );
    this.failures = metrics.counter(
      'dmp_mqtt_dead_letter_failures_total',
      'Dead-letter sends that failed: retried (transient) or given up (refused by RocketMQ)',
      ['kind'],
    );
    health.register('rocketmq', () => ({
      up: this.producer.isReady(),
      detail: { endpoints: config.rocketmq.endpoints, topic: this.topic, failingSends: this.failing },
    }));
  }

  /** Before the transport listens (startAllMicroservices runs after init). */
  async onModuleInit(): Promise<void> {
    await this.producer.start();
  }

  /** After the transport drained (beforeApplicationShutdown), so in-flight sends have finished. */
  async onApplicationShutdown(): Promise<void> {
    await this.producer.stop();
  }

  async publish(refused: Omit<RefusedMessage, 'instance'>, signal: AbortSignal): Promise<DeadLetterOutcome> {
    const message = toDeadLetter(this.topic, { ...refused, instance: this.instance });
    for (let attempt = 1; ; attempt++) {
      if (signal.aborted) return 'aborted';
      try {
        await this.producer.send(message);
        this.deadLettered.inc({ reason: refused.code });
        return 'sent';
      } catch (error) {
        const retryable = !(error instanceof DmpError) || error.retryable;
        this.failures.inc({ kind: retryable ? 'retried' : 'refused' });
        if (!retryable) {
          this.log.error(
            `RocketMQ refused the dead letter of a ${refused.code} message from ${refused.topic} ` +
              `(${refused.payload.length} bytes, payload head ${refused.payload.subarray(0, 64).toString('base64')}): ` +
              (error as Error).message,
          );
          return 'refused';
        }
        this.noteFailure(error);
        const delay = Math.min(RETRY_MAX_MS, RETRY_BASE_MS * 2 ** Math.min(attempt - 1, 16));
        this.failing++;
        try {
          await sleep(delay * (0.8 + Math.random() * 0.4), undefined, { signal });
        } catch {
          return 'aborted';
        } finally {
          this.failing--;
        }
      }
    }
  }

  private noteFailure(error: unknown): void {
    const now = Date.now();
    if (now - this.lastFailureLogAt < FAILURE_LOG_INTERVAL_MS) return;
    this.lastFailureLogAt = now;
    this.log.warn(
      `dead-letter send failed, retrying (the refused messages wait): ${(error as Error).message}`,
    );
  }
}
