import {
  bool,
  cleaningSection,
  clickhouseSection,
  httpSection,
  int,
  loadConfig,
  redisSection,
  rocketmqSection,
  telemetrySection,
} from '@dmp/config';
import { z } from 'zod';
import { alarmsSection } from './alarms/alarms.config';
import { commandsSection } from './commands/commands.config';
import { deadLettersSection } from './dead-letters/dead-letters.config';

/** dmp-data's own settings: the RocketMQ consumer and the ClickHouse batch writer. */
export const dataSection = z
  .object({
    DATA_CONSUMER_GROUP: z
      .string()
      .regex(/^[A-Za-z0-9_%|-]+$/)
      .default('dmp_data'),
    /**
     * Concurrent receive calls. A FIFO queue stays locked from a receive until its messages are
     * acked, so one poller per queue (32 per telemetry topic, docker/rocketmq/topics.txt)
     * keeps every queue busy.
     */
    DATA_RECEIVE_POLLERS: int(32, 1, 256),
    /** Messages handed to handlers and not yet settled; bounds memory together with the queue cap. */
    DATA_MAX_IN_FLIGHT: int(10_000, 1, 1_000_000),
    /**
     * Deliveries of a message before a retryable failure (ClickHouse away) dead-letters it. High:
     * storage outages are not the message's fault (≈16 h at the consumer's 60 s redelivery cap).
     */
    DATA_MAX_DELIVERY_ATTEMPTS: int(1_000, 1, 1_000_000),
    /** How long a received message stays invisible to other consumers before RocketMQ redelivers it. */
    DATA_INVISIBLE_MS: int(60_000, 10_000, 12 * 3_600_000),
    DATA_BATCH_MAX_ROWS: int(5_000, 1, 1_000_000),
    DATA_BATCH_MAX_WAIT_MS: int(500, 1, 600_000),
    /**
     * Also flush once no message arrived for this long (0: off). RocketMQ locks a FIFO queue
     * until its received messages are acked, so a batch cannot grow past what the consumer
     * holds: waiting the full DATA_BATCH_MAX_WAIT_MS would only add latency.
     */
    DATA_BATCH_IDLE_MS: int(20, 0, 600_000),
    /** Batches inserted at the same time. */
    DATA_INSERT_CONCURRENCY: int(2, 1, 16),
    /** Messages held in memory (queued + being inserted) before handlers wait for room. */
    DATA_QUEUE_MAX_ROWS: int(50_000, 1, 10_000_000),
    /** Retrying a failed insert (backoff from the base, doubling, capped at 5 s) for at most this long. */
    DATA_INSERT_RETRY_BASE_MS: int(200, 1, 60_000),
    DATA_INSERT_RETRY_MAX_MS: int(20_000, 0, 3_600_000),
    /** Days of telemetry_raw kept (0: forever). TTL on servers that have it, partition drops on 18.16. */
    DATA_RETENTION_DAYS: int(0, 0, 36_500),
    /** Per-minute aggregates (telemetry_1m), recomputed from deduplicated raw data. */
    DATA_AGGREGATION_ENABLED: bool(true),
    /** A minute is first computed this long after it ended; later data triggers a recomputation. */
    DATA_AGGREGATION_LATENESS_MS: int(60_000, 0, 86_400_000),
    DATA_AGGREGATION_INTERVAL_MS: int(5_000, 100, 3_600_000),
    /**
     * How long the instance that aggregates holds the lease (Redis) between passes: the others
     * take over this long after it died. Longer than DATA_AGGREGATION_INTERVAL_MS.
     */
    DATA_AGGREGATION_LEASE_MS: int(30_000, 1_000, 3_600_000),
    /**
     * (device, minute)s of late data per recomputation statement (each also costs a part of
     * telemetry_1m); a minute marked whole (on-time data) is one statement, whatever its devices.
     */
    DATA_AGGREGATION_MAX_KEYS: int(5_000, 1, 100_000),
    /** How long start-up waits for ClickHouse to apply migrations. */
    DATA_STARTUP_TIMEOUT_MS: int(60_000, 0, 3_600_000),
  })
  .refine((e) => e.DATA_AGGREGATION_LEASE_MS > e.DATA_AGGREGATION_INTERVAL_MS, {
    message: 'must be longer than DATA_AGGREGATION_INTERVAL_MS',
    path: ['DATA_AGGREGATION_LEASE_MS'],
  })
  .transform((e) => ({
    consumerGroup: e.DATA_CONSUMER_GROUP,
    maxInFlight: e.DATA_MAX_IN_FLIGHT,
    pollers: e.DATA_RECEIVE_POLLERS,
    invisibleMs: e.DATA_INVISIBLE_MS,
    maxDeliveryAttempts: e.DATA_MAX_DELIVERY_ATTEMPTS,
    batch: {
      maxRows: e.DATA_BATCH_MAX_ROWS,
      maxWaitMs: e.DATA_BATCH_MAX_WAIT_MS,
      idleMs: e.DATA_BATCH_IDLE_MS,
      concurrency: e.DATA_INSERT_CONCURRENCY,
      maxQueueRows: e.DATA_QUEUE_MAX_ROWS,
      retryBaseMs: e.DATA_INSERT_RETRY_BASE_MS,
      retryMaxMs: e.DATA_INSERT_RETRY_MAX_MS,
    },
    startupTimeoutMs: e.DATA_STARTUP_TIMEOUT_MS,
    retentionDays: e.DATA_RETENTION_DAYS,
    aggregation: {
      enabled: e.DATA_AGGREGATION_ENABLED,
      latenessMs: e.DATA_AGGREGATION_LATENESS_MS,
      intervalMs: e.DATA_AGGREGATION_INTERVAL_MS,
      leaseMs: e.DATA_AGGREGATION_LEASE_MS,
      maxKeys: e.DATA_AGGREGATION_MAX_KEYS,
    },
  }));

export function loadDataConfig(env?: Record<string, string | undefined>) {
  return loadConfig(
    {
      http: httpSection(3003),
      telemetry: telemetrySection,
      rocketmq: rocketmqSection,
      clickhouse: clickhouseSection,
      redis: redisSection,
      data: dataSection,
      alarms: alarmsSection,
      commands: commandsSection,
      deadLetters: deadLettersSection,
      cleaning: cleaningSection,
    },
    env,
  );
}

export type DataConfig = ReturnType<typeof loadDataConfig>;

/** Nest injection token of the validated configuration. */
export const DATA_CONFIG = Symbol('DATA_CONFIG');
