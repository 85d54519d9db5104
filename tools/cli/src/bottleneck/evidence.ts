import { plannedQueries, type PlannedQuery } from './hops';
import type { JaegerClient, SlimTrace } from './jaeger.client';
import type { PrometheusClient, PromSample, PromSeries } from './prometheus.client';
import { DMP_SERVICES, isMessageOperation } from './trace-stats';

/**
 * Everything the analysis reads, as the APIs answered it: one JSON document that `dmp bottleneck
 * --save` writes and `--replay` (and the unit specs) analyze again offline.
 */
export interface Evidence {
  version: 1;
  /** ISO 8601. */
  from: string;
  to: string;
  stepSeconds: number;
  prometheus: {
    url: string;
    results: Record<string, QueryResult>;
  };
  jaeger?: {
    url: string;
    searches: { service: string; operation: string; traces: number; error?: string }[];
    /** Traces left out for having more spans than a message's trace ever has (batch or test traces). */
    skippedLarge?: number;
    traces: SlimTrace[];
    error?: string;
  };
}

export type QueryResult = PlannedQuery &
  ({ samples: PromSample[] } | { series: PromSeries[] } | { error: string });

export interface CollectOptions {
  prometheus: PrometheusClient;
  /** Without it, no trace cross-check. */
  jaeger?: JaegerClient;
  from: Date;
  to: Date;
  /** Traces fetched per message operation (process spans of each service). */
  tracesPerOperation?: number;
}

/** A message's trace has a dozen spans (a few dozen with retries); bigger ones are not message traces. */
const MAX_SPANS_PER_TRACE = 200;

/** Range steps: about 120 points, never finer than the local stack's 5 s scrape interval. */
export function stepFor(from: Date, to: Date): number {
  return Math.max(5, Math.ceil((to.getTime() - from.getTime()) / 1000 / 120));
}

export async function collectEvidence(options: CollectOptions): Promise<Evidence> {
  const { from, to } = options;
  const rangeSeconds = (to.getTime() - from.getTime()) / 1000;
  const stepSeconds = stepFor(from, to);
  const results: Record<string, QueryResult> = {};
  await forEachLimited(plannedQueries(rangeSeconds), 6, async (planned) => {
    try {
      results[planned.key] =
        planned.kind === 'instant'
          ? { ...planned, samples: await options.prometheus.query(planned.expr, to) }
          : { ...planned, series: await options.prometheus.queryRange(planned.expr, from, to, stepSeconds) };
    } catch (error) {
      results[planned.key] = { ...planned, error: (error as Error).message };
    }
  });
  const evidence: Evidence = {
    version: 1,
    from: from.toISOString(),
    to: to.toISOString(),
    stepSeconds,
    prometheus: { url: options.prometheus.baseUrl, results },
  };
  if (options.jaeger)
    evidence.jaeger = await collectTraces(options.jaeger, from, to, options.tracesPerOperation ?? 50);
  return evidence;
}

async function collectTraces(
  jaeger: JaegerClient,
  from: Date,
  to: Date,
  limit: number,
): Promise<NonNullable<Evidence['jaeger']>> {
  const out: NonNullable<Evidence['jaeger']> = { url: jaeger.baseUrl, searches: [], traces: [] };
  const seen = new Set<string>();
  try {
    for (const service of DMP_SERVICES) {
      const operations = (await jaeger.operations(service))
        .filter((op) => isMessageOperation(service, op))
        .sort();
      for (const operation of operations) {
        try {
          const traces = await jaeger.traces({ service, operation, start: from, end: to, limit });
          out.searches.push({ service, operation, traces: traces.length });
          for (const trace of traces) {
            if (trace.spans.length > MAX_SPANS_PER_TRACE) {
              out.skippedLarge = (out.skippedLarge ?? 0) + 1;
              continue;
            }
            if (!seen.has(trace.traceID)) {
              seen.add(trace.traceID);
              out.traces.push(trace);
            }
          }
        } catch (error) {
          out.searches.push({ service, operation, traces: 0, error: (error as Error).message });
        }
      }
    }
  } catch (error) {
    out.error = (error as Error).message;
  }
  return out;
}

async function forEachLimited<T>(
  items: readonly T[],
  limit: number,
  run: (item: T) => Promise<void>,
): Promise<void> {
  let next = 0;
  const worker = async () => {
    while (next < items.length) await run(items[next++]);
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
}
