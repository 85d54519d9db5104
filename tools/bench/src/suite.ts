/**
 * A benchmark suite: one module in ./suites, registered in ./suites/index.ts. The runner (main.ts) runs
 * the selected suites one after the other, prints their measurements as a table and writes each suite's
 * result to `bench-results/<suite>.json`.
 */
export interface BenchOptions {
  /** Smaller workloads (CI smoke runs): suites scale their sizes down. */
  quick: boolean;
  /** Keep what the suite created on the servers (e.g. the chain suite's ClickHouse database). */
  keep?: boolean;
  /** Offered rates (msg/s) to step through instead of the suite's own (suites with steps). */
  rates?: number[];
  /** Duration of one step, seconds (suites with steps). */
  stepSeconds?: number;
  /** The hops to measure (the hops suite; default all). */
  hops?: ('mqtt' | 'kernel' | 'data')[];
  /** Messages measured per hop (the hops suite). */
  messages?: number;
}

export interface Measurement {
  name: string;
  value: number;
  unit: string;
}

export interface SuiteResult {
  /**
   * The run in a few figures, written first in the JSON (the chain's: see `chainSummary`; the hops': each
   * hop's rate and CPU per message).
   */
  summary?: object;
  /** The headline numbers, printed as the table. */
  measurements: Measurement[];
  /** Parameters and anything else worth keeping in the JSON. */
  details: Record<string, unknown>;
  /** Further tables printed after the measurements (e.g. one row per step), kept in the JSON too. */
  tables?: Table[];
}

export interface Table {
  title: string;
  columns: string[];
  rows: (string | number)[][];
}

/** Numbers with thousands separators and at most `digits` decimals; NaN as '-'. */
export function formatNumber(value: number, digits = 2): string {
  if (Number.isNaN(value)) return '-';
  return Number.isInteger(value)
    ? value.toLocaleString('en-US')
    : value.toLocaleString('en-US', { maximumFractionDigits: digits });
}

/** An aligned text table: columns of numbers right-aligned, text left-aligned, a rule under the header. */
export function formatTable(
  columns: readonly string[],
  rows: readonly (readonly (string | number)[])[],
): string {
  const cells = rows.map((row) => columns.map((_, i) => row[i] ?? ''));
  const text = cells.map((row) => row.map((v) => (typeof v === 'number' ? formatNumber(v) : v)));
  const widths = columns.map((title, i) => Math.max(title.length, ...text.map((row) => row[i].length)));
  // Right-align columns of numbers (formatted or not; '-' stands for none).
  const numeric = columns.map(
    (_, i) => text.length > 0 && text.every((row) => /^(?:[-+]?[\d,]*\.?\d+ ?[%×]?|-)$/.test(row[i])),
  );
  const line = (row: readonly string[]) =>
    `  ${row.map((v, i) => (numeric[i] ? v.padStart(widths[i]) : v.padEnd(widths[i]))).join('  ')}`.trimEnd();
  return [line(columns), line(widths.map((w) => '-'.repeat(w))), ...text.map(line)].join('\n');
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
