import { int } from '@dmp/config';
import { z } from 'zod';

/** Settings of dmp-data's alarm store (`alarms`, `alarm_events`); defaults apply when the app does not load it. */
export const alarmsSection = z
  .object({
    /** Consumer group of the alarm topic (FIFO: an orderly group). */
    ALARM_CONSUMER_GROUP: z
      .string()
      .regex(/^[A-Za-z0-9_%|-]+$/)
      .default('dmp_data_alarm'),
    ALARM_RECEIVE_POLLERS: int(4, 1, 64),
    ALARM_MAX_IN_FLIGHT: int(2_000, 1, 100_000),
    /** An alarm event whose insert keeps failing (ClickHouse away) is redelivered up to this many times. */
    ALARM_MAX_DELIVERY_ATTEMPTS: int(1_000, 1, 1_000_000),
    ALARM_BATCH_MAX_ROWS: int(1_000, 1, 100_000),
    ALARM_BATCH_MAX_WAIT_MS: int(200, 1, 600_000),
  })
  .transform((e) => ({
    consumerGroup: e.ALARM_CONSUMER_GROUP,
    pollers: e.ALARM_RECEIVE_POLLERS,
    maxInFlight: e.ALARM_MAX_IN_FLIGHT,
    maxDeliveryAttempts: e.ALARM_MAX_DELIVERY_ATTEMPTS,
    batch: {
      maxRows: e.ALARM_BATCH_MAX_ROWS,
      maxWaitMs: e.ALARM_BATCH_MAX_WAIT_MS,
      idleMs: 20,
      concurrency: 1,
      maxQueueRows: Math.max(e.ALARM_MAX_IN_FLIGHT, e.ALARM_BATCH_MAX_ROWS),
      retryBaseMs: 200,
      retryMaxMs: 20_000,
    },
  }));

export type AlarmsConfig = z.output<typeof alarmsSection>;
