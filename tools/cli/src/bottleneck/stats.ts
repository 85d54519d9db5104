/** Small statistics used by the bottleneck analysis: exact quantiles of samples, trends of series. */

/** The q-quantile (0 ≤ q ≤ 1) of the samples, nearest-rank; undefined for no samples. */
export function quantile(samples: readonly number[], q: number): number | undefined {
  if (samples.length === 0) return undefined;
  const sorted = [...samples].sort((a, b) => a - b);
  const rank = Math.ceil(q * sorted.length);
  return sorted[Math.min(sorted.length - 1, Math.max(0, rank - 1))];
}

export interface Point {
  /** Unix seconds. */
  t: number;
  v: number;
}

export interface Trend {
  /** Mean of the first and the last fifth of the points (at least one point each). */
  first: number;
  last: number;
  max: number;
  /** Least-squares slope, per minute. */
  slopePerMinute: number;
  points: number;
}

/** How a series moved over the range; undefined when it has no finite point. */
export function trend(points: readonly Point[]): Trend | undefined {
  const finite = points.filter((p) => Number.isFinite(p.v));
  if (finite.length === 0) return undefined;
  const edge = Math.max(1, Math.floor(finite.length / 5));
  const mean = (ps: readonly Point[]) => ps.reduce((sum, p) => sum + p.v, 0) / ps.length;
  return {
    first: mean(finite.slice(0, edge)),
    last: mean(finite.slice(-edge)),
    max: Math.max(...finite.map((p) => p.v)),
    slopePerMinute: slope(finite) * 60,
    points: finite.length,
  };
}

/** Least-squares slope of v over t (per second); 0 for fewer than two points. */
export function slope(points: readonly Point[]): number {
  if (points.length < 2) return 0;
  const n = points.length;
  const meanT = points.reduce((s, p) => s + p.t, 0) / n;
  const meanV = points.reduce((s, p) => s + p.v, 0) / n;
  let num = 0;
  let den = 0;
  for (const p of points) {
    num += (p.t - meanT) * (p.v - meanV);
    den += (p.t - meanT) ** 2;
  }
  return den === 0 ? 0 : num / den;
}

/** Mean of the points in the last `fraction` of the time range [start, end]. */
export function tailMean(
  points: readonly Point[],
  start: number,
  end: number,
  fraction = 0.2,
): number | undefined {
  const from = end - (end - start) * fraction;
  const tail = points.filter((p) => p.t >= from && Number.isFinite(p.v));
  if (tail.length === 0) return undefined;
  return tail.reduce((s, p) => s + p.v, 0) / tail.length;
}
