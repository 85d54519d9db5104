import { int } from '@dmp/config';
import { z } from 'zod';

/**
 * Settings of dmp-data's dead-letter store (`dead_letters` in ClickHouse). Add to loadDataConfig as
 * `deadLetters: deadLettersSection`; without it the defaults apply.
 */
export const deadLettersSection = z
  .object({
    /** Consumer group of the dead-letter topic (NORMAL topic: a non-orderly group). */
    DEAD_LETTER_CONSUMER_GROUP: z
      .string()
      .regex(/^[A-Za-z0-9_%|-]+$/)
      .default('dmp_data_dead_letter'),
    DEAD_LETTER_RECEIVE_POLLERS: int(2, 1, 64),
    DEAD_LETTER_MAX_IN_FLIGHT: int(2_000, 1, 100_000),
    DEAD_LETTER_MAX_RETRY_DELAY_MS: int(60_000, 1_000, 3_600_000),
    DEAD_LETTER_BATCH_MAX_ROWS: int(1_000, 1, 100_000),
    DEAD_LETTER_BATCH_MAX_WAIT_MS: int(500, 1, 600_000),
  })
  .transform((e) => ({
    consumerGroup: e.DEAD_LETTER_CONSUMER_GROUP,
    pollers: e.DEAD_LETTER_RECEIVE_POLLERS,
    maxInFlight: e.DEAD_LETTER_MAX_IN_FLIGHT,
    batch: {
      maxRows: e.DEAD_LETTER_BATCH_MAX_ROWS,
      maxWaitMs: e.DEAD_LETTER_BATCH_MAX_WAIT_MS,
      idleMs: 20,
      concurrency: 1,
      maxQueueRows: Math.max(e.DEAD_LETTER_MAX_IN_FLIGHT, e.DEAD_LETTER_BATCH_MAX_ROWS),
      retryBaseMs: 200,
      retryMaxMs: 20_000,
    },
    /**
     * Redelivery after a failed insert: doubling from 1 s up to this. No attempt limit: a dead letter
     * has nowhere else to go, so while ClickHouse is away the consumer waits and retries.
     */
    maxRetryDelayMs: e.DEAD_LETTER_MAX_RETRY_DELAY_MS,
  }));

export type DeadLettersConfig = z.output<typeof deadLettersSection>;
