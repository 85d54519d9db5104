import { int } from '@dmp/config';
import { z } from 'zod';

/** Settings of one stream, from `<PREFIX>_CONSUMER_GROUP`, `<PREFIX>_RECEIVE_POLLERS`, … */
export interface EventStreamConfig {
  consumerGroup: string;
  pollers: number;
  maxInFlight: number;
  /** An event whose insert keeps failing (ClickHouse away) is redelivered up to this many times. */
  maxDeliveryAttempts: number;
  batch: {
    maxRows: number;
    maxWaitMs: number;
    idleMs: number;
    concurrency: number;
    maxQueueRows: number;
    retryBaseMs: number;
    retryMaxMs: number;
  };
}

/** The config section of a stream whose variables start with `prefix` (`ALARM` → `ALARM_CONSUMER_GROUP`). */
export function eventStreamSection(prefix: string, defaults: { consumerGroup: string; pollers: number }) {
  const name = (key: string) => `${prefix}_${key}`;
  return z
    .object({
      /** Consumer group of the topic (FIFO: an orderly group). */
      [name('CONSUMER_GROUP')]: z
        .string()
        .regex(/^[A-Za-z0-9_%|-]+$/)
        .default(defaults.consumerGroup),
      [name('RECEIVE_POLLERS')]: int(defaults.pollers, 1, 64),
      [name('MAX_IN_FLIGHT')]: int(2_000, 1, 100_000),
      [name('MAX_DELIVERY_ATTEMPTS')]: int(1_000, 1, 1_000_000),
      [name('BATCH_MAX_ROWS')]: int(1_000, 1, 100_000),
      [name('BATCH_MAX_WAIT_MS')]: int(200, 1, 600_000),
    })
    .transform((e): EventStreamConfig => {
      const count = (key: string) => e[name(key)] as number;
      return {
        consumerGroup: e[name('CONSUMER_GROUP')] as string,
        pollers: count('RECEIVE_POLLERS'),
        maxInFlight: count('MAX_IN_FLIGHT'),
        maxDeliveryAttempts: count('MAX_DELIVERY_ATTEMPTS'),
        batch: {
          maxRows: count('BATCH_MAX_ROWS'),
          maxWaitMs: count('BATCH_MAX_WAIT_MS'),
          idleMs: 20,
          concurrency: 1,
          maxQueueRows: Math.max(count('MAX_IN_FLIGHT'), count('BATCH_MAX_ROWS')),
          retryBaseMs: 200,
          retryMaxMs: 20_000,
        },
      };
    });
}
