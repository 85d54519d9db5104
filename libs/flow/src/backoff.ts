/**
 * The project's one exponential backoff, with one jitter rule (jitter only shortens a delay). Every
 * retry loop takes its delays from here, each with its own base, cap and jitter share: dmp-data's
 * inserts (BatchWriter), dmp-mqtt's kernel calls (OrderedBatcher), dead-letter sends
 * (DeadLetterBatcher) and registry waits, the RocketMQ consumer's receive loop and redeliveries, the
 * kernel's alarm outbox (libs/rules), the ClickHouse migrations and the simulator's resends.
 * Not here: the webhook dispatcher's retries, which undici's RetryAgent times (honouring Retry-After),
 * and the RocketMQ producer's single fixed-delay retry.
 */
export interface BackoffOptions {
  /** Delay before the first retry (attempt 1), in ms. */
  baseMs: number;
  /** No delay is longer than this, jitter included, in ms. */
  maxMs: number;
  /**
   * Share of the delay drawn at random, 0 (none, the default) to 1: the delay is uniform between
   * (1 − jitter) × d and d, where d is the capped exponential delay — jitter only shortens, so `maxMs` holds.
   */
  jitter?: number;
}

/** 2 ** 52 is still an exact integer; any base of at least 1 ms reaches every sensible cap long before. */
export const MAX_BACKOFF_EXPONENT = 52;

/**
 * The delay before retry number `attempt` (1, 2, …): `baseMs × 2^(attempt − 1)`, capped at `maxMs`,
 * then shortened at random by up to `jitter` of itself. Attempts below 1 (or not a number) count as 1.
 * `random` returns a number in [0, 1), as Math.random does; specs pass their own.
 */
export function backoffDelay(
  attempt: number,
  options: BackoffOptions,
  random: () => number = Math.random,
): number {
  const exponent = attempt >= 1 ? Math.min(Math.floor(attempt) - 1, MAX_BACKOFF_EXPONENT) : 0;
  const delay = Math.max(0, Math.min(options.maxMs, options.baseMs * 2 ** exponent));
  const jitter = Math.min(1, Math.max(0, options.jitter ?? 0));
  return jitter === 0 ? delay : delay * (1 - jitter * random());
}
