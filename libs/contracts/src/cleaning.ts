import { z } from 'zod';
import { CleanCode } from './errors';
import {
  MAX_METRICS,
  METRIC_NAME_PATTERN,
  metricValueSchema,
  normalizedTelemetrySchema,
  type NormalizedTelemetry,
} from './telemetry';

/**
 * Telemetry cleaning: the one definition of what DMP stores. dmp-data stores only what it accepts (and
 * dead-letters the rest); dmp-kernel evaluates rules only on what it accepts, with the same limits
 * (DATA_CLEAN_*, `cleaningSection` in @dmp/config), so no alarm stands on data that storage refused.
 */

/** Configured bounds of one metric; `null`: the global ±DATA_CLEAN_MAX_ABS_VALUE on that side. */
export interface MetricRange {
  min: number | null;
  max: number | null;
}

/** The limits cleaning applies: the validated `cleaning` section of dmp-data's and dmp-kernel's config. */
export interface CleaningLimits {
  /** DATA_CLEAN_MAX_FUTURE_MS (0: off). */
  maxFutureMs: number;
  /** DATA_CLEAN_MAX_AGE_MS (0: off). */
  maxAgeMs: number;
  /** DATA_CLEAN_MAX_ABS_VALUE (0: off). */
  maxAbsValue: number;
  /** DATA_CLEAN_METRIC_RANGES. A Map: a plain object would answer `ranges.constructor` for a metric named `constructor`. */
  ranges: ReadonlyMap<string, MetricRange>;
}

/** One metric cleaning removed from a message that is otherwise stored. */
export interface MetricRemoval {
  metric: string;
  code: CleanCode;
  /** Readable, e.g. `150 is outside [0, 100]`. */
  detail: string;
}

/** Why a whole message is refused. */
export interface MessageRejection {
  code: CleanCode;
  detail: string;
}

export type CleaningResult =
  /** Store `telemetry`; `removed` lists what it lost (empty: the message was clean). */
  | { kind: 'accepted'; telemetry: NormalizedTelemetry; removed: MetricRemoval[] }
  /** Store nothing; `removed` lists metrics that would have been removed as well. */
  | { kind: 'rejected'; rejection: MessageRejection; removed: MetricRemoval[] };

/** Fields a NormalizedTelemetry cannot do without. */
const REQUIRED_FIELDS = ['deviceId', 'messageId', 'kind', 'ts', 'metrics', 'receivedAt'] as const;
const MAX_ISSUES = 5;

/**
 * NormalizedTelemetry with its metrics taken as they are: `checkMetric` has already checked each name
 * and value by the contract's rules and removed what fails, so only their count is left to check (the
 * contract's own schema would check every metric a second time).
 */
const cleanedTelemetrySchema = normalizedTelemetrySchema.extend({
  metrics: z
    .record(z.string(), z.unknown())
    .refine((m) => Object.keys(m).length <= MAX_METRICS, `at most ${MAX_METRICS} metrics`),
});

/**
 * Cleans one parsed telemetry entry (the JSON of a RocketMQ message) before it is stored. Pure.
 *
 * Per metric, first: an invalid name or value (→ InvalidMetric), NaN/±Infinity (→ NotFinite), a number
 * outside its range (→ OutOfRange) is removed and the rest kept. Then the message as a whole: it must be
 * a valid NormalizedTelemetry (→ MissingField / InvalidField, with the schema's issues), its `ts` no
 * further than `maxFutureMs` ahead of `nowMs` (→ TsFuture) nor older than `maxAgeMs` (→ TsTooOld), and
 * a message whose metrics were all removed is refused (→ NoMetricsLeft) — an entry without any value
 * would tell nothing but that the device spoke, and the dead letter keeps it. A message that arrived with
 * no metrics at all is not cleaning's business: it stays accepted.
 */
export function cleanTelemetry(entry: unknown, limits: CleaningLimits, nowMs: number): CleaningResult {
  if (!isRecord(entry))
    return rejected(CleanCode.InvalidField, `(root): expected a JSON object, got ${describeType(entry)}`, []);

  const removed: MetricRemoval[] = [];
  let candidate: Record<string, unknown> = entry;
  if (isRecord(entry.metrics)) {
    const kept: Record<string, unknown> = {};
    for (const [metric, value] of Object.entries(entry.metrics)) {
      const removal = checkMetric(metric, value, limits);
      if (removal) removed.push(removal);
      else kept[metric] = value;
    }
    if (removed.length > 0) candidate = { ...entry, metrics: kept };
  }

  const parsed = cleanedTelemetrySchema.safeParse(candidate);
  if (!parsed.success) {
    const missing = REQUIRED_FIELDS.filter((field) => entry[field] === undefined || entry[field] === null);
    const issues = parsed.error.issues
      .slice(0, MAX_ISSUES)
      .map((issue) => `${issue.path.join('.') || '(root)'}: ${issue.message}`);
    const more = parsed.error.issues.length - MAX_ISSUES;
    const detail = `${issues.join('; ')}${more > 0 ? `; and ${more} more` : ''}`;
    return missing.length > 0
      ? rejected(CleanCode.MissingField, `missing ${missing.join(', ')} — ${detail}`, removed)
      : rejected(CleanCode.InvalidField, detail, removed);
  }
  const telemetry = parsed.data as NormalizedTelemetry;

  if (limits.maxFutureMs > 0 && telemetry.ts > nowMs + limits.maxFutureMs)
    return rejected(
      CleanCode.TsFuture,
      `ts ${iso(telemetry.ts)} is ${telemetry.ts - nowMs} ms ahead of the clock (${iso(nowMs)}); at most ${limits.maxFutureMs} ms (DATA_CLEAN_MAX_FUTURE_MS) allowed`,
      removed,
    );
  if (limits.maxAgeMs > 0 && telemetry.ts < nowMs - limits.maxAgeMs)
    return rejected(
      CleanCode.TsTooOld,
      `ts ${iso(telemetry.ts)} is ${nowMs - telemetry.ts} ms old (clock ${iso(nowMs)}); at most ${limits.maxAgeMs} ms (DATA_CLEAN_MAX_AGE_MS) allowed`,
      removed,
    );
  if (removed.length > 0 && Object.keys(telemetry.metrics).length === 0)
    return rejected(
      CleanCode.NoMetricsLeft,
      `all ${removed.length} metric(s) removed: ${describeRemovals(removed)}`,
      removed,
    );
  return { kind: 'accepted', telemetry, removed };
}

/** Why one metric must go, or undefined when it stays. */
function checkMetric(metric: string, value: unknown, limits: CleaningLimits): MetricRemoval | undefined {
  if (!METRIC_NAME_PATTERN.test(metric))
    return {
      metric,
      code: CleanCode.InvalidMetric,
      detail: `invalid metric name (${METRIC_NAME_PATTERN.source})`,
    };
  if (typeof value === 'number') {
    if (!Number.isFinite(value))
      return { metric, code: CleanCode.NotFinite, detail: `${String(value)} is not a finite number` };
    const [min, max] = boundsOf(metric, limits);
    if (value < min || value > max)
      return {
        metric,
        code: CleanCode.OutOfRange,
        detail: `${String(value)} is outside [${String(min)}, ${String(max)}]`,
      };
    return undefined;
  }
  const result = metricValueSchema.safeParse(value);
  if (!result.success)
    return {
      metric,
      code: CleanCode.InvalidMetric,
      detail: `${describeValue(value)} is no number, boolean or text of at most 256 characters`,
    };
  return undefined;
}

/** The metric's configured range, each open side (or an unconfigured metric) ±maxAbsValue (0: unbounded). */
function boundsOf(metric: string, limits: CleaningLimits): [number, number] {
  const global = limits.maxAbsValue > 0 ? limits.maxAbsValue : Infinity;
  const range = limits.ranges.get(metric);
  return [range?.min ?? -global, range?.max ?? global];
}

/** `temp (DMP_ERR_CLEAN_NOT_FINITE: Infinity is not a finite number); hum (…)`. */
export function describeRemovals(removed: readonly MetricRemoval[]): string {
  return removed.map((r) => `${r.metric} (${r.code}: ${r.detail})`).join('; ');
}

const rejected = (code: CleanCode, detail: string, removed: MetricRemoval[]): CleaningResult => ({
  kind: 'rejected',
  rejection: { code, detail },
  removed,
});

const isRecord = (value: unknown): value is Record<string, unknown> =>
  typeof value === 'object' && value !== null && !Array.isArray(value);

const describeType = (value: unknown): string =>
  value === null ? 'null' : Array.isArray(value) ? 'an array' : typeof value;

function describeValue(value: unknown): string {
  if (typeof value === 'string') return `text of ${value.length} characters`;
  if (value === null || typeof value !== 'object') return String(value);
  return describeType(value);
}

/** ISO time when representable, the raw milliseconds otherwise. */
function iso(ms: number): string {
  const date = new Date(ms);
  return Number.isNaN(date.getTime()) ? String(ms) : date.toISOString();
}
