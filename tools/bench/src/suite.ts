/**
 * A benchmark suite: one module in ./suites, registered in ./suites/index.ts. The runner (main.ts) runs
 * the selected suites one after the other, prints their measurements as a table and writes each suite's
 * result to `bench-results/<suite>.json`.
 */
export interface BenchOptions {
  /** Smaller workloads (CI smoke runs): suites scale their sizes down. */
  quick: boolean;
}

export interface Measurement {
  name: string;
  value: number;
  unit: string;
}

export interface SuiteResult {
  /** The headline numbers, printed as the table. */
  measurements: Measurement[];
  /** Parameters and anything else worth keeping in the JSON. */
  details: Record<string, unknown>;
}

export interface BenchSuite {
  name: string;
  description: string;
  run(options: BenchOptions): Promise<SuiteResult>;
}

/** Percentile of sorted values (nearest rank). */
export function percentile(sorted: Float64Array | number[], p: number): number {
  if (sorted.length === 0) return Number.NaN;
  const rank = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[rank];
}

/** A seeded pseudo-random generator (mulberry32): the same workload on every run. */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
