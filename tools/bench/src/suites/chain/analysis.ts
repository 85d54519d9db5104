/**
 * The pure parts of the chain benchmark: the plan of steps, the device mix of a step, what a step's
 * samples say (throughput, backlog growth, saturation), latency summaries, the CPU budget per message and
 * /proc parsing.
 * No I/O here, so all of it is unit-tested (analysis.spec.ts).
 */
import { percentile } from '../../suite';

/** The design load the README states: 100,000 devices ≈ 600 msg/s (a snapshot per device every 5 minutes). */
export const DESIGN_DEVICES = 100_000;
export const DESIGN_RATE = 600;
export const SNAPSHOT_INTERVAL_MS = 5 * 60_000;
/** The target of issue #8: messages a second, end to end, on this machine with the whole stack on it. */
export const TARGET_RATE = 20_000;

export interface StepPlan {
  /** Offered rates (msg/s, change events + snapshots), in the order they are tried. */
  rates: number[];
  stepMs: number;
  /** Left out of the throughput and backlog figures: the pipeline fills up first. */
  warmupMs: number;
  /** After publishing stops, how long to wait for the last rows at most. */
  drainTimeoutMs: number;
}

export function stepPlan(
  quick: boolean,
  overrides: { rates?: number[]; stepSeconds?: number } = {},
): StepPlan {
  const stepMs = (overrides.stepSeconds ?? (quick ? 20 : 60)) * 1000;
  return {
    rates: overrides.rates?.length
      ? [...overrides.rates]
      : quick
        ? [500, 1_000, 2_000]
        : [500, 1_000, 2_000, 5_000, 10_000, TARGET_RATE],
    stepMs,
    warmupMs: Math.min(quick ? 5_000 : 10_000, Math.floor(stepMs / 4)),
    drainTimeoutMs: quick ? 30_000 : 60_000,
  };
}

export interface FleetMix {
  /** Change events per second (the simulator's `rate`). */
  changesPerSecond: number;
  snapshotsPerSecond: number;
  /** Divides the 5-minute snapshot period: the fleet lives this many times faster than real time. */
  timeCompression: number;
}

/**
 * A fleet of `devices` offering `rate` msg/s in the design proportions: real time is compressed until the
 * fleet sends `rate`, and the 5-minute snapshots take their share (100,000 devices: 333 of 600 msg/s).
 */
export function fleetMix(rate: number, devices: number): FleetMix {
  const designRate = (DESIGN_RATE * devices) / DESIGN_DEVICES;
  const timeCompression = rate / designRate;
  const snapshotsPerSecond = (devices * timeCompression * 1000) / SNAPSHOT_INTERVAL_MS;
  return { changesPerSecond: Math.max(0, rate - snapshotsPerSecond), snapshotsPerSecond, timeCompression };
}

/** One observation during a step: time since the step started, broker acknowledgements, rows stored. */
export interface StepSample {
  atMs: number;
  sent: number;
  acked: number;
  rows: number;
}

export interface StepVerdict {
  /** Offered rate actually published (sent/s over the whole step). */
  publishedPerSecond: number;
  ackedPerSecond: number;
  /** Rows/s landing in ClickHouse over the measured window (after the warm-up). */
  throughput: number;
  /** Growth of (acked − rows) over the measured window, msg/s; ≈ 0 while the pipeline keeps up. */
  backlogGrowthPerSecond: number;
  saturated: boolean;
  /** Why, in words (empty when keeping up). */
  reason: string;
}

/** Least-squares slope of y over x (0 for fewer than two distinct x). */
export function slope(points: readonly { x: number; y: number }[]): number {
  const n = points.length;
  if (n < 2) return 0;
  const mx = points.reduce((s, p) => s + p.x, 0) / n;
  const my = points.reduce((s, p) => s + p.y, 0) / n;
  let num = 0;
  let den = 0;
  for (const p of points) {
    num += (p.x - mx) * (p.y - my);
    den += (p.x - mx) ** 2;
  }
  return den === 0 ? 0 : num / den;
}

/**
 * What a step's samples say. Saturated when the stored rate falls below `keepUpRatio` of what the broker
 * took, or the backlog grows by more than `1 − keepUpRatio` of it per second, or the publisher itself could
 * not offer the target (then the bench, not the pipeline, is the limit: stop as well).
 */
export function judgeStep(
  samples: readonly StepSample[],
  target: number,
  { warmupMs, stepMs, keepUpRatio = 0.9 }: { warmupMs: number; stepMs: number; keepUpRatio?: number },
): StepVerdict {
  const inStep = samples.filter((s) => s.atMs <= stepMs + 500);
  const window = inStep.filter((s) => s.atMs >= warmupMs);
  const first = window[0];
  const last = window[window.length - 1];
  const end = inStep[inStep.length - 1];
  const seconds = (ms: number) => Math.max(ms, 1) / 1000;
  const publishedPerSecond = end ? end.sent / seconds(end.atMs) : 0;
  const windowSeconds = first && last && last.atMs > first.atMs ? seconds(last.atMs - first.atMs) : 0;
  const throughput = windowSeconds ? (last.rows - first.rows) / windowSeconds : 0;
  const ackedPerSecond = windowSeconds ? (last.acked - first.acked) / windowSeconds : 0;
  const backlogGrowthPerSecond = slope(window.map((s) => ({ x: s.atMs / 1000, y: s.acked - s.rows })));
  const reasons: string[] = [];
  if (publishedPerSecond < keepUpRatio * target)
    reasons.push(`publisher offered ${Math.round(publishedPerSecond)} of ${target} msg/s`);
  if (throughput < keepUpRatio * ackedPerSecond)
    reasons.push(
      `stored ${Math.round(throughput)} of ${Math.round(ackedPerSecond)} msg/s taken by the broker`,
    );
  if (backlogGrowthPerSecond > (1 - keepUpRatio) * Math.max(ackedPerSecond, 1))
    reasons.push(`backlog grows ${Math.round(backlogGrowthPerSecond)} msg/s`);
  if (!windowSeconds) reasons.push('no samples after the warm-up');
  return {
    publishedPerSecond,
    ackedPerSecond,
    throughput,
    backlogGrowthPerSecond,
    saturated: reasons.length > 0,
    reason: reasons.join('; '),
  };
}

export interface LatencySummary {
  samples: number;
  p50: number;
  p99: number;
  max: number;
}

export function summarizeLatencies(values: readonly number[]): LatencySummary {
  const sorted = Float64Array.from(values).sort();
  return {
    samples: sorted.length,
    p50: percentile(sorted, 50),
    p99: percentile(sorted, 99),
    max: sorted.length ? sorted[sorted.length - 1] : Number.NaN,
  };
}

/** CPU time of a process from `/proc/<pid>/stat` (utime + stime, clock ticks). */
export function parseProcStat(text: string): { cpuTicks: number } {
  // The command name (field 2) is in parentheses and may contain spaces: split after the last ')'.
  const fields = text.slice(text.lastIndexOf(')') + 2).split(' ');
  // fields[0] is field 3 (state); utime and stime are fields 14 and 15.
  const utime = Number(fields[11]);
  const stime = Number(fields[12]);
  if (!Number.isFinite(utime) || !Number.isFinite(stime)) throw new Error('unexpected /proc/<pid>/stat');
  return { cpuTicks: utime + stime };
}

/** Resident memory from `/proc/<pid>/status`, bytes. */
export function parseVmRss(text: string): number {
  const match = /^VmRSS:\s+(\d+)\s+kB/m.exec(text);
  return match ? Number(match[1]) * 1024 : Number.NaN;
}

/** Busy and total jiffies of all CPUs together, from the first line of `/proc/stat`. */
export function parseMachineStat(text: string): { busy: number; total: number } {
  const line = text.split('\n')[0] ?? '';
  const values = line.trim().split(/\s+/).slice(1).map(Number);
  // user nice system idle iowait irq softirq steal [guest guest_nice: already counted in user/nice]
  const total = values.slice(0, 8).reduce((a, b) => a + b, 0);
  const idle = (values[3] ?? 0) + (values[4] ?? 0);
  return { busy: total - idle, total };
}

/** CPU use between two readings, % of one core (200 % = two cores busy). */
export const cpuPercent = (
  ticksBefore: number,
  ticksAfter: number,
  elapsedMs: number,
  ticksPerSecond = 100,
) => (elapsedMs > 0 ? ((ticksAfter - ticksBefore) / ticksPerSecond / (elapsedMs / 1000)) * 100 : 0);

/** Best rate the pipeline kept up with, and the most it stored at all (at saturation). */
export function headline(steps: readonly { target: number; verdict: StepVerdict }[]): {
  bestSustained: number;
  bestSustainedTarget: number | undefined;
  peak: number;
} {
  const kept = steps.filter((s) => !s.verdict.saturated);
  const best = kept.reduce<(typeof steps)[number] | undefined>(
    (a, s) => (!a || s.verdict.throughput > a.verdict.throughput ? s : a),
    undefined,
  );
  return {
    bestSustained: best?.verdict.throughput ?? 0,
    bestSustainedTarget: best?.target,
    peak: Math.max(0, ...steps.map((s) => s.verdict.throughput)),
  };
}

/** Per-second rate of each counter in `hops` over the measured window (slope, like the backlog). */
export function hopRates(
  samples: readonly (StepSample & { hops?: Record<string, number> })[],
  { warmupMs, stepMs }: { warmupMs: number; stepMs: number },
): Record<string, number> {
  const window = samples.filter((s) => s.atMs >= warmupMs && s.atMs <= stepMs + 500 && s.hops);
  const names = Object.keys(window[0]?.hops ?? {});
  return Object.fromEntries(
    names.map((name) => [name, slope(window.map((s) => ({ x: s.atMs / 1000, y: s.hops![name] })))]),
  );
}

/** µs of one core per message, from a process's CPU (% of one core) over a window and the messages/s then. */
export const microsPerMessage = (cpuPercent: number, messagesPerSecond: number) =>
  messagesPerSecond > 0 ? (cpuPercent * 10_000) / messagesPerSecond : Number.NaN;

export interface CpuBudget {
  /** µs of one core per stored message: the apps, every other tracked process (servers, bench process), all. */
  appsUs: number;
  othersUs: number;
  allUs: number;
  /** The rate the machine's cores allow at that cost (msg/s)… */
  ceiling: number;
  /** …and the rate they would allow if the apps cost nothing: what the others leave. */
  ceilingWithoutApps: number;
}

/** Where a step's CPU went per stored message, and the rates the machine's cores allow at that cost. */
export function cpuBudget(
  cpuPercentByProcess: Readonly<Record<string, number>>,
  storedPerSecond: number,
  apps: readonly string[],
  cores: number,
): CpuBudget {
  let appsPercent = 0;
  let othersPercent = 0;
  for (const [name, percent] of Object.entries(cpuPercentByProcess)) {
    if (apps.includes(name)) appsPercent += percent;
    else othersPercent += percent;
  }
  const appsUs = microsPerMessage(appsPercent, storedPerSecond);
  const othersUs = microsPerMessage(othersPercent, storedPerSecond);
  const allUs = appsUs + othersUs;
  return {
    appsUs,
    othersUs,
    allUs,
    ceiling: (cores * 1e6) / allUs,
    ceilingWithoutApps: (cores * 1e6) / othersUs,
  };
}

/**
 * The run in six figures, the top-level `summary` of the chain's JSON (what docs/performance.md quotes
 * and a later run is compared with). `null` where the run measured nothing (no step kept up).
 */
export interface ChainSummary {
  /** Stored msg/s of the best step that kept up (see {@link headline}); 0 when none did. */
  sustainedMsgPerSec: number;
  /** End-to-end p99 at that step, seconds. */
  p99Seconds: number | null;
  /** Messages lost over all steps, after the drain. */
  lost: number;
  /** µs of CPU the three apps spent per stored message at that step. */
  appsCpuMicrosPerMessage: number | null;
  /** ClickHouse rows written per stored message at that step (views and the aggregator's included). */
  clickhouseRowsPerMessage: number | null;
  /** The raw Mosquitto pass-through of the same run, msg/s. */
  rawBrokerMsgPerSec: number;
}

export function chainSummary(
  steps: readonly {
    target: number;
    verdict: StepVerdict;
    lost: number;
    latencyMs: { p99: number };
    rowsWrittenPerMessage: Record<string, number>;
    appsCpuMicrosPerMessage: number;
  }[],
  rawBrokerMsgPerSec: number,
): ChainSummary {
  const best = headline(steps);
  const step = steps.find((s) => !s.verdict.saturated && s.target === best.bestSustainedTarget);
  const finite = (value: number | undefined, digits: number) =>
    value !== undefined && Number.isFinite(value) ? Number(value.toFixed(digits)) : null;
  return {
    sustainedMsgPerSec: Math.round(best.bestSustained),
    p99Seconds: finite(step && step.latencyMs.p99 / 1000, 3),
    lost: steps.reduce((sum, s) => sum + s.lost, 0),
    appsCpuMicrosPerMessage: finite(step?.appsCpuMicrosPerMessage, 1),
    clickhouseRowsPerMessage: finite(step?.rowsWrittenPerMessage.all, 3),
    rawBrokerMsgPerSec: Math.round(rawBrokerMsgPerSec),
  };
}
