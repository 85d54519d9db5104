/** The time range of `dmp bottleneck`: `--since 10m`, or `--from ISO [--to ISO]`. */

export interface TimeRange {
  from: Date;
  to: Date;
}

const UNITS = { s: 1_000, m: 60_000, h: 3_600_000, d: 86_400_000 } as const;

/** `90s`, `10m`, `2h`, `1d` → milliseconds; undefined if it is not a duration. */
export function parseDuration(value: string): number | undefined {
  const match = /^(\d+(?:\.\d+)?)(s|m|h|d)$/.exec(value.trim());
  return match ? Number(match[1]) * UNITS[match[2] as keyof typeof UNITS] : undefined;
}

/** An ISO 8601 time, or a duration meaning that long before `now`. */
export function parseTime(value: string, now: number): Date {
  const ago = parseDuration(value);
  if (ago !== undefined) return new Date(now - ago);
  const at = Date.parse(value);
  if (Number.isNaN(at)) throw new Error(`"${value}" is neither an ISO 8601 time nor a duration like 10m`);
  return new Date(at);
}

export function resolveRange(
  options: { since?: string; from?: string; to?: string },
  now = Date.now(),
): TimeRange {
  if (options.since !== undefined && options.from !== undefined)
    throw new Error('give --since or --from, not both');
  const to = options.to !== undefined ? parseTime(options.to, now) : new Date(now);
  let from: Date;
  if (options.from !== undefined) from = parseTime(options.from, now);
  else {
    const span = parseDuration(options.since ?? '10m');
    if (span === undefined)
      throw new Error(`--since wants a duration like 90s, 10m or 2h, not "${options.since}"`);
    from = new Date(to.getTime() - span);
  }
  if (to.getTime() - from.getTime() < 30_000)
    throw new Error('the range must be at least 30 s long (Prometheus scrapes every 5–15 s)');
  return { from, to };
}
