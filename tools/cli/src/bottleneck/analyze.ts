import type { Evidence, QueryResult } from './evidence';
import { HOPS, type BacklogSpec, type HistogramRef, type HopId, type HopSpec } from './hops';
import type { PromSample, PromSeries } from './prometheus.client';
import { tailMean, trend, type Point } from './stats';
import {
  DMP_SERVICES,
  operationStats,
  traceHopStats,
  uniqueTraces,
  type OperationStats,
  type TraceHopStats,
} from './trace-stats';

/**
 * The bottleneck analysis: plain functions over the evidence (API answers), no I/O.
 *
 * Per hop: p50/p99 latency over the range (Prometheus histograms), its own share of the per-message
 * time (a hop's p99 minus the p99 of a hop nested in it), throughput, and each backlog's trend. A
 * backlog of messages is judged in seconds of work — held messages ÷ the hop's throughput (Little's
 * law) — so the same thresholds fit a laptop and a cluster.
 *
 * The slowest hop: backpressure fills every queue upstream of a slow hop, so the hop named is the
 * most downstream one whose backlog is high or rising (the dashboards' rule: "a backlog that grows
 * at hop n while hop n+1 is empty means hop n's consumer is the bottleneck"). Without any backlog,
 * it is the hop with the largest share of the latency. Jaeger's span durations for the same hops are
 * the cross-check.
 */

export interface LatencyStat {
  label: string;
  /** Seconds; undefined without observations in the range. */
  p50?: number;
  p99?: number;
  queries: string[];
}

export interface BacklogStat {
  id: string;
  label: string;
  unit: BacklogSpec['unit'];
  query: string;
  /** In the series' own unit (messages, seconds, ratio). */
  first?: number;
  last?: number;
  max?: number;
  slopePerMinute?: number;
  /** Level and rise as judged: seconds of work for `messages`, else the series' unit. */
  level?: number;
  rise?: number;
  high: boolean;
  growing: boolean;
}

export interface HopReport {
  id: HopId;
  title: string;
  service: string;
  panel: string;
  queue: boolean;
  latency?: LatencyStat;
  /** p99 minus the nested hop's p99 (seconds). */
  ownP99?: number;
  latencyShare?: number;
  details: LatencyStat[];
  throughput: {
    label: string;
    /** Messages per second over the whole range. */
    perSecond?: number;
    /** Mean per-second rate in the first and last fifth of the range. */
    first?: number;
    last?: number;
    /** The rate held messages are judged against: the larger of `last` and `perSecond`. */
    drainRate: number;
    queries: string[];
  };
  backlog: BacklogStat[];
  backlogged: boolean;
  traces?: TraceHopStats & { share?: number };
}

export interface Verdict {
  hop?: HopId;
  title?: string;
  /** What decided: a high or rising backlog, the latency share, or nothing to go by. */
  basis: 'backlog' | 'latency' | 'no-data';
  summary: string;
  evidence: string[];
  /** Whether the largest own time in the traces is at the same hop as in Prometheus. */
  tracesAgree?: boolean;
}

export interface BottleneckReport {
  from: string;
  to: string;
  hops: HopReport[];
  verdict: Verdict;
  operations: OperationStats[];
  traceCount: number;
  warnings: string[];
}

/** Messages held below this many are never a backlog, whatever the throughput. */
const MIN_HELD_MESSAGES = 10;

export function analyze(evidence: Evidence): BottleneckReport {
  const from = new Date(evidence.from);
  const to = new Date(evidence.to);
  const start = from.getTime() / 1000;
  const end = to.getTime() / 1000;
  const warnings: string[] = [];
  const results = evidence.prometheus.results;

  const instant = (key: string): number | undefined => {
    const result = results[key];
    if (!result) return undefined;
    if ('error' in result) {
      warnings.push(`${key}: ${result.error}`);
      return undefined;
    }
    return 'samples' in result ? finite(sumSamples(result.samples)) : undefined;
  };
  const points = (key: string): Point[] => {
    const result = results[key];
    if (!result) return [];
    if ('error' in result) {
      warnings.push(`${key}: ${result.error}`);
      return [];
    }
    return 'series' in result ? sumSeries(result.series) : [];
  };
  const latencyStat = (key: string, ref: HistogramRef): LatencyStat => ({
    label: ref.label,
    p50: instant(`${key}.p50`),
    p99: instant(`${key}.p99`),
    queries: [queryOf(results[`${key}.p50`]), queryOf(results[`${key}.p99`])],
  });

  const hops: HopReport[] = HOPS.map((spec) => {
    const throughputPoints = points(`${spec.id}.throughput.series`);
    const throughputTrend = trend(throughputPoints);
    const rangeThroughput = instant(`${spec.id}.throughput`);
    const tailThroughput = tailMean(throughputPoints, start, end) ?? rangeThroughput;
    // Little's law wants the rate messages leave at; a 1-minute rate lags behind a load that just
    // started, so the range's average counts too (the larger: held messages are not overrated).
    const drainRate = Math.max(tailThroughput ?? 0, rangeThroughput ?? 0);
    const backlog = spec.backlog.map((b) =>
      backlogStat(spec, b, points(`${spec.id}.backlog.${b.id}`), results, drainRate, start, end),
    );
    return {
      id: spec.id,
      title: spec.title,
      service: spec.service,
      panel: spec.panel,
      queue: spec.queue ?? false,
      ...(spec.latency ? { latency: latencyStat(`${spec.id}.latency`, spec.latency) } : {}),
      details: spec.details.map((ref, i) => latencyStat(`${spec.id}.detail${i}`, ref)),
      throughput: {
        label: spec.throughput.label,
        perSecond: rangeThroughput,
        first: throughputTrend?.first,
        last: tailThroughput,
        drainRate,
        queries: [
          queryOf(results[`${spec.id}.throughput`]),
          queryOf(results[`${spec.id}.throughput.series`]),
        ],
      },
      backlog,
      backlogged: backlog.some((b) => b.high || b.growing),
    };
  });

  // Own time: a hop's p99 minus the p99 of the hop inside it (dmp-mqtt's hand-off contains the kernel's ingest).
  for (const hop of hops) {
    const spec = HOPS.find((s) => s.id === hop.id)!;
    const p99 = hop.latency?.p99;
    if (p99 === undefined) continue;
    const nested = spec.nested ? hops.find((h) => h.id === spec.nested)?.latency?.p99 : undefined;
    hop.ownP99 = Math.max(0, p99 - (nested ?? 0));
  }
  const ownTotal = hops.reduce((sum, h) => sum + (h.ownP99 ?? 0), 0);
  if (ownTotal > 0)
    for (const hop of hops) if (hop.ownP99 !== undefined) hop.latencyShare = hop.ownP99 / ownTotal;

  // The traces' view of the same hops.
  const traces = evidence.jaeger ? uniqueTraces(evidence.jaeger.traces) : [];
  if (evidence.jaeger?.error) warnings.push(`Jaeger: ${evidence.jaeger.error}`);
  for (const search of evidence.jaeger?.searches ?? [])
    if (search.error) warnings.push(`Jaeger ${search.service} ${search.operation}: ${search.error}`);
  if (evidence.jaeger && traces.length === 0) warnings.push('Jaeger has no DMP message traces in the range');
  if (traces.length > 0) {
    const perHop = traceHopStats(traces, from, to);
    const traceTotal = perHop
      .filter((t) => t.hop !== 'broker-mqtt')
      .reduce((sum, t) => sum + (t.p99 ?? 0), 0);
    for (const hop of hops) {
      const stats = perHop.find((t) => t.hop === hop.id)!;
      hop.traces = {
        ...stats,
        ...(traceTotal > 0 && stats.p99 !== undefined && hop.id !== 'broker-mqtt'
          ? { share: stats.p99 / traceTotal }
          : {}),
      };
    }
  }

  return {
    from: evidence.from,
    to: evidence.to,
    hops,
    verdict: verdict(hops),
    operations: traces.length > 0 ? operationStats(traces, from, to, DMP_SERVICES) : [],
    traceCount: traces.length,
    warnings,
  };
}

function backlogStat(
  hop: HopSpec,
  spec: BacklogSpec,
  points: Point[],
  results: Record<string, QueryResult>,
  throughput: number | undefined,
  start: number,
  end: number,
): BacklogStat {
  const t = trend(points);
  const base: BacklogStat = {
    id: spec.id,
    label: spec.label,
    unit: spec.unit,
    query: queryOf(results[`${hop.id}.backlog.${spec.id}`]),
    high: false,
    growing: false,
  };
  if (!t) return base;
  const last = tailMean(points, start, end) ?? t.last;
  let level: number;
  let rise: number;
  if (spec.unit === 'messages') {
    // Little's law: held ÷ rate = how long a message waits there. A stalled hop holding messages waits forever.
    const rate = throughput ?? 0;
    const seconds = (held: number) =>
      held < MIN_HELD_MESSAGES ? 0 : rate > 0.01 ? held / rate : Number.POSITIVE_INFINITY;
    level = seconds(last);
    rise = last - t.first < MIN_HELD_MESSAGES ? 0 : seconds(last) - seconds(t.first);
  } else {
    level = last;
    rise = last - t.first;
  }
  return {
    ...base,
    first: t.first,
    last,
    max: t.max,
    slopePerMinute: t.slopePerMinute,
    level,
    rise,
    high: spec.judged !== false && level >= spec.high,
    growing: spec.judged !== false && rise >= spec.rise && t.slopePerMinute > 0,
  };
}

function verdict(hops: HopReport[]): Verdict {
  const backlogged = hops.filter((h) => h.backlogged);
  const byTraces = argmax(
    hops.filter((h) => h.traces?.share !== undefined),
    (h) => h.traces!.share!,
  );
  const byLatency = argmax(
    hops.filter((h) => h.latencyShare !== undefined),
    (h) => h.latencyShare!,
  );
  const tracesAgree = byTraces && byLatency ? byTraces.id === byLatency.id : undefined;

  if (backlogged.length > 0) {
    const hop = backlogged[backlogged.length - 1];
    const index = hops.indexOf(hop);
    const evidence = [
      ...hop.backlog.filter((b) => b.high || b.growing).map((b) => describeBacklog(hop, b)),
      describeThroughput(hop, hops[index - 1]),
      ...describeLatency(hop),
    ];
    const upstream = backlogged.slice(0, -1);
    if (upstream.length > 0)
      evidence.push(
        `upstream backlogs (they fill because this hop is slow): ${upstream
          .map(
            (h) =>
              `${h.title} — ${h.backlog
                .filter((b) => b.high || b.growing)
                .map((b) => shortBacklog(b))
                .join(', ')}`,
          )
          .join('; ')}`,
      );
    const downstream = hops.slice(index + 1).filter((h) => h.backlog.length > 0);
    if (downstream.length > 0)
      evidence.push(`downstream hops hold no backlog: ${downstream.map((h) => h.title).join('; ')}`);
    return {
      hop: hop.id,
      title: hop.title,
      basis: 'backlog',
      summary: `${hop.title} is the bottleneck: its backlog is ${hop.backlog.some((b) => b.growing) ? 'rising' : 'high'} and every hop after it keeps up`,
      evidence,
      ...(tracesAgree !== undefined ? { tracesAgree } : {}),
    };
  }
  if (byLatency) {
    return {
      hop: byLatency.id,
      title: byLatency.title,
      basis: 'latency',
      summary: `no backlog builds up; the largest share of the per-message time is ${byLatency.title} (${pct(byLatency.latencyShare!)})`,
      evidence: [
        ...describeLatency(byLatency),
        `latency shares (own p99): ${hops
          .filter((h) => h.latencyShare !== undefined)
          .map((h) => `${h.id} ${pct(h.latencyShare!)}`)
          .join(', ')}`,
        describeThroughput(byLatency, hops[hops.indexOf(byLatency) - 1]),
      ],
      ...(tracesAgree !== undefined ? { tracesAgree } : {}),
    };
  }
  return {
    basis: 'no-data',
    summary: 'no latency or backlog data in the range: are the apps scraped, and was there traffic?',
    evidence: [],
  };
}

function describeBacklog(hop: HopReport, b: BacklogStat): string {
  const rate = hop.throughput.drainRate;
  const work =
    b.unit === 'messages' && b.level !== undefined
      ? Number.isFinite(b.level)
        ? `, ≈ ${seconds(b.level)} of work at ${num(rate)} msg/s`
        : ', while the hop moves nothing'
      : '';
  return `${b.label} ${b.growing ? 'rose' : 'stayed high'}: ${value(b.first, b.unit)} → ${value(b.last, b.unit)} (max ${value(b.max, b.unit)}, ${b.slopePerMinute! >= 0 ? '+' : ''}${value(b.slopePerMinute, b.unit)}/min)${work}  [${b.query}]`;
}

const shortBacklog = (b: BacklogStat) => `${b.label} ${value(b.first, b.unit)} → ${value(b.last, b.unit)}`;

function describeThroughput(hop: HopReport, before: HopReport | undefined): string {
  const t = hop.throughput;
  const into = before?.throughput.last;
  return `throughput ${t.label}: ${num(t.perSecond)} msg/s over the range, ${num(t.first)} → ${num(t.last)} msg/s${
    into !== undefined ? ` (the hop before: ${num(into)} msg/s ${before!.throughput.label})` : ''
  }  [${t.queries[1]}]`;
}

function describeLatency(hop: HopReport): string[] {
  const lines: string[] = [];
  for (const stat of [hop.latency, ...hop.details]) {
    if (!stat || stat.p99 === undefined) continue;
    lines.push(`${stat.label}: p50 ${seconds(stat.p50)}, p99 ${seconds(stat.p99)}  [${stat.queries[1]}]`);
  }
  if (hop.traces?.p99 !== undefined)
    lines.push(
      `Jaeger, ${hop.traces.count} spans: ${hop.traces.measure}: p50 ${seconds(hop.traces.p50)}, p99 ${seconds(hop.traces.p99)}`,
    );
  return lines;
}

function sumSamples(samples: PromSample[]): number {
  if (samples.length === 0) return NaN;
  return samples.reduce((sum, s) => sum + Number(s.value[1]), 0);
}

/** The series summed per timestamp (queries here aggregate to one series; this also covers several). */
function sumSeries(series: PromSeries[]): Point[] {
  const byTime = new Map<number, number>();
  for (const s of series)
    for (const [t, v] of s.values) {
      const value = Number(v);
      if (!Number.isFinite(value)) continue;
      byTime.set(t, (byTime.get(t) ?? 0) + value);
    }
  return [...byTime.entries()].sort(([a], [b]) => a - b).map(([t, v]) => ({ t, v }));
}

const finite = (n: number) => (Number.isFinite(n) ? n : undefined);
const queryOf = (result: QueryResult | undefined) => result?.expr ?? '';

function argmax<T>(items: T[], score: (item: T) => number): T | undefined {
  let best: T | undefined;
  for (const item of items) if (best === undefined || score(item) > score(best)) best = item;
  return best;
}

export const pct = (share: number) => `${Math.round(share * 100)} %`;

export function seconds(value: number | undefined): string {
  if (value === undefined || !Number.isFinite(value)) return value === undefined ? '–' : '∞';
  if (value < 0) return `-${seconds(-value)}`;
  if (value === 0) return '0 s';
  if (value >= 100) return `${Math.round(value)} s`;
  if (value >= 1) return `${value.toFixed(1)} s`;
  if (value >= 0.001) return `${(value * 1000).toFixed(value >= 0.01 ? 0 : 1)} ms`;
  return `${Math.round(value * 1e6)} µs`;
}

export function num(value: number | undefined): string {
  if (value === undefined || !Number.isFinite(value)) return '–';
  if (value < 0) return `-${num(-value)}`;
  return value >= 100 ? String(Math.round(value)) : value >= 10 ? value.toFixed(1) : value.toFixed(2);
}

function value(v: number | undefined, unit: BacklogSpec['unit']): string {
  if (v === undefined) return '–';
  if (unit === 'seconds') return seconds(v);
  if (unit === 'ratio') return pct(v);
  return num(v);
}
