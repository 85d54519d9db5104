import { METRIC_NAME_PATTERN, type CleaningLimits, type MetricRange } from '@dmp/contracts';
import { z } from 'zod';
import { int } from './env';

const DAY_MS = 86_400_000;

/** A bound of a metric's range; `null` leaves that side to DATA_CLEAN_MAX_ABS_VALUE. */
const bound = z.number().nullable();

/** `{"temp": [-40, 85], "level": [0, null]}`: metric name → [min, max]. */
const metricRangesSchema = z
  .record(
    z.string(),
    z
      .tuple([bound, bound])
      .refine(([min, max]) => min === null || max === null || min <= max, 'min must not exceed max'),
  )
  .superRefine((ranges, ctx) => {
    for (const metric of Object.keys(ranges))
      if (!METRIC_NAME_PATTERN.test(metric))
        ctx.addIssue({
          code: 'custom',
          path: [metric],
          message: `not a valid metric name (${METRIC_NAME_PATTERN.source})`,
        });
  });

const metricRanges = z
  .string()
  .optional()
  .transform((text, ctx): unknown => {
    if (text === undefined || text.trim() === '') return {};
    try {
      return JSON.parse(text);
    } catch (error) {
      ctx.addIssue({
        code: 'custom',
        message: `not JSON (${(error as Error).message}); expected e.g. {"temp": [-40, 85]}`,
      });
      return z.NEVER;
    }
  })
  .pipe(metricRangesSchema);

/**
 * The limits of telemetry cleaning (`cleanTelemetry` in @dmp/contracts): what dmp-data refuses to store,
 * and — the same variables, so the two cannot disagree — what dmp-kernel keeps from its rules. Both apps
 * register it as `cleaning: cleaningSection`; set the DATA_CLEAN_* variables alike for both.
 */
export const cleaningSection = z
  .object({
    /** A message whose device timestamp is further ahead of the checking app's clock is refused (0: off). */
    DATA_CLEAN_MAX_FUTURE_MS: int(5 * 60_000, 0, 3_650 * DAY_MS),
    /** A message whose device timestamp is older than this is refused (0: off). Devices do backfill. */
    DATA_CLEAN_MAX_AGE_MS: int(365 * DAY_MS, 0, 36_500 * DAY_MS),
    /** A number whose magnitude exceeds this is removed as out of range (0: off), unless its metric has a range. */
    DATA_CLEAN_MAX_ABS_VALUE: z.coerce.number().min(0).default(1e15),
    /** JSON object, metric name → [min, max] (a bound may be null); replaces the ±MAX_ABS_VALUE bounds. */
    DATA_CLEAN_METRIC_RANGES: metricRanges,
  })
  .transform((e): CleaningLimits => ({
    maxFutureMs: e.DATA_CLEAN_MAX_FUTURE_MS,
    maxAgeMs: e.DATA_CLEAN_MAX_AGE_MS,
    maxAbsValue: e.DATA_CLEAN_MAX_ABS_VALUE,
    /** A Map: a plain object would answer `ranges.constructor` for a metric named `constructor`. */
    ranges: new Map<string, MetricRange>(
      Object.entries(e.DATA_CLEAN_METRIC_RANGES).map(([metric, [min, max]]) => [metric, { min, max }]),
    ),
  }));
