import { int } from '@dmp/config';
import { z } from 'zod';

/** Settings of dmp-data's command ledger store (`commands`, `command_events`); defaults when not loaded. */
export const commandsSection = z
  .object({
    /** Consumer group of the command topic (FIFO: an orderly group). */
    COMMAND_CONSUMER_GROUP: z
      .string()
      .regex(/^[A-Za-z0-9_%|-]+$/)
      .default('dmp_data_command'),
    COMMAND_RECEIVE_POLLERS: int(2, 1, 64),
    COMMAND_MAX_IN_FLIGHT: int(2_000, 1, 100_000),
    /** A command event whose insert keeps failing (ClickHouse away) is redelivered up to this many times. */
    COMMAND_MAX_DELIVERY_ATTEMPTS: int(1_000, 1, 1_000_000),
    COMMAND_BATCH_MAX_ROWS: int(1_000, 1, 100_000),
    COMMAND_BATCH_MAX_WAIT_MS: int(200, 1, 600_000),
  })
  .transform((e) => ({
    consumerGroup: e.COMMAND_CONSUMER_GROUP,
    pollers: e.COMMAND_RECEIVE_POLLERS,
    maxInFlight: e.COMMAND_MAX_IN_FLIGHT,
    maxDeliveryAttempts: e.COMMAND_MAX_DELIVERY_ATTEMPTS,
    batch: {
      maxRows: e.COMMAND_BATCH_MAX_ROWS,
      maxWaitMs: e.COMMAND_BATCH_MAX_WAIT_MS,
      idleMs: 20,
      concurrency: 1,
      maxQueueRows: Math.max(e.COMMAND_MAX_IN_FLIGHT, e.COMMAND_BATCH_MAX_ROWS),
      retryBaseMs: 200,
      retryMaxMs: 20_000,
    },
  }));

export type CommandsConfig = z.output<typeof commandsSection>;
