import {
  CleanCode,
  cleanTelemetry,
  type CleaningLimits,
  type MetricRemoval,
  type NormalizedTelemetry,
} from '@dmp/contracts';

/**
 * What rules may see of one device message: exactly what dmp-data stores of it. Both apps apply the same
 * `cleanTelemetry` with the same limits (DATA_CLEAN_*), so an alarm never stands on data that storage
 * refused — and that current data, which storage keeps, could then not clear.
 */
export type RuleInput =
  /** Evaluate `telemetry` (without the metrics storage removes, listed in `removed`). */
  | { kind: 'evaluate'; telemetry: NormalizedTelemetry; removed: MetricRemoval[] }
  /** Storage refuses the whole message (its time, or no metric left): rules do not see it. */
  | { kind: 'skip'; code: CleanCode; detail: string }
  /** Not a NormalizedTelemetry at all: the message is refused (dead-lettered), as storage refuses it. */
  | { kind: 'invalid'; problem: string };

/** Whole-message refusals that say nothing about the message's shape: rules skip it, nothing is dead-lettered here. */
const SKIPPED: ReadonlySet<CleanCode> = new Set([
  CleanCode.TsFuture,
  CleanCode.TsTooOld,
  CleanCode.NoMetricsLeft,
]);

/** Decides what rules see of one parsed entry, at `nowMs` (the kernel's clock). Pure. */
export function ruleInputOf(json: unknown, limits: CleaningLimits, nowMs: number): RuleInput {
  const result = cleanTelemetry(json, limits, nowMs);
  if (result.kind === 'accepted')
    return { kind: 'evaluate', telemetry: result.telemetry, removed: result.removed };
  const { code, detail } = result.rejection;
  if (SKIPPED.has(code)) return { kind: 'skip', code, detail };
  return { kind: 'invalid', problem: `not a NormalizedTelemetry (${code}): ${detail}` };
}
