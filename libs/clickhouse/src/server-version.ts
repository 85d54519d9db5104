/** The ClickHouse server release, for features that old servers (18.16 here) do not have. */
export interface ServerVersion {
  raw: string;
  major: number;
  minor: number;
}

export function parseServerVersion(raw: string): ServerVersion {
  const [major = 0, minor = 0] = raw.split('.').map((part) => Number.parseInt(part, 10) || 0);
  return { raw, major, minor };
}

export const atLeast = (version: ServerVersion, major: number, minor = 0): boolean =>
  version.major > major || (version.major === major && version.minor >= minor);

/**
 * What DMP's schema uses when the server has it. Everything else in the schema runs on 18.16.
 * - table TTL (`ALTER TABLE … MODIFY TTL`): 19.6; older servers drop expired partitions instead.
 * - `LowCardinality(String)`: production-ready (no experimental setting) from 19.3; migration 008.
 * - `DateTime64` with `fromUnixTimestamp64Milli`: 20.5; migration 009's millisecond ALIAS columns.
 * - `input_format_defaults_for_omitted_fields`: 19.4 (DMP never relies on it: every column is sent).
 */
export const serverFeatures = (version: ServerVersion) => ({
  tableTtl: atLeast(version, 19, 6),
  lowCardinality: atLeast(version, 19, 3),
  dateTime64: atLeast(version, 20, 5),
});

export type ServerFeature = keyof ReturnType<typeof serverFeatures>;
