/**
 * Row shapes of DMP's ClickHouse tables, as JSONEachRow objects. Every column is sent explicitly:
 * 18.16 fills a column missing from a JSONEachRow row with the type's zero value, not its DEFAULT
 * (`input_format_defaults_for_omitted_fields` does not exist before 19.4).
 * Schema and keys: migrations/ and docs/analysts.md.
 */

export const Tables = {
  raw: 'telemetry_raw',
  latest: 'telemetry_latest',
  minute: 'telemetry_1m',
  minuteMarks: 'telemetry_1m_marks',
  minuteProgress: 'telemetry_1m_progress',
  minuteSource: 'telemetry_1m_source',
  migrations: 'schema_migrations',
} as const;

export type TelemetryKindColumn = 'telemetry' | 'event' | 'snapshot';

/** One row per message. Key: (device_id, ts_ms, message_id). */
export interface TelemetryRawRow {
  device_id: string;
  message_id: string;
  kind: TelemetryKindColumn;
  ts_ms: number;
  /** Unix seconds (DateTime), derived from ts_ms. */
  ts: number;
  seq: number | null;
  tenant_id: string;
  product_id: string;
  site_id: string;
  metric_names: string[];
  metric_values: number[];
  text_names: string[];
  text_values: string[];
  received_at_ms: number;
  /** Unix seconds (DateTime) of the first insert attempt (a retried batch is the same block). */
  inserted_at: number;
}

export type LatestValueType = 'number' | 'bool' | 'text';

/** One row per device, metric and message; the engine keeps the newest (by `version`) per (device_id, metric). */
export interface TelemetryLatestRow {
  device_id: string;
  metric: string;
  value_type: LatestValueType;
  /** The number, or 0/1 for a boolean; 0 for text. */
  value: number;
  /** The text, '' for numbers and booleans. */
  text_value: string;
  ts_ms: number;
  message_id: string;
  kind: TelemetryKindColumn;
  tenant_id: string;
  product_id: string;
  site_id: string;
  inserted_at: number;
}

/** A (device, minute) whose aggregates must be recomputed; inserted with columns (device_id, minute). */
export interface MinuteMarkRow {
  device_id: string;
  /** Unix seconds of the minute's start. */
  minute: number;
}

/** One row of `dead_letters` (migration 004), written by dmp-data's dead-letters feature. */
export interface DeadLetterRow {
  message_id: string;
  /** Unix seconds (DateTime) and epoch milliseconds of when the source received the message. */
  received_at: number;
  received_at_ms: number;
  /** When the dead letter was written to RocketMQ (its born timestamp). */
  dead_lettered_at_ms: number;
  source: string;
  source_instance: string;
  source_topic: string;
  source_message_id: string;
  device_id: string;
  error_code: string;
  error_message: string;
  content_type: string;
  /** The raw payload, base64. */
  payload: string;
  /** The payload as text when it is valid UTF-8, else ''. */
  payload_text: string;
  payload_size: number;
  /** Every user property of the dead letter, as a JSON object. */
  properties: string;
  trace_id: string;
  inserted_at: number;
}

/** The `dead_letters` columns `dmp dead-letters list | replay` reads back. */
export const DEAD_LETTER_RECORD_COLUMNS = [
  'message_id',
  'received_at_ms',
  'source',
  'source_instance',
  'source_topic',
  'source_message_id',
  'device_id',
  'error_code',
  'error_message',
  'content_type',
  'payload',
  'payload_text',
  'payload_size',
  'properties',
] as const satisfies readonly (keyof DeadLetterRow)[];

/**
 * A dead letter read back from ClickHouse. JSONEachRow output quotes UInt64 columns (`received_at_ms`)
 * up to 25.7 and writes them as numbers from 25.8 (`output_format_json_quote_64bit_integers` = 0).
 */
export type DeadLetterRecord = Omit<
  Pick<DeadLetterRow, (typeof DEAD_LETTER_RECORD_COLUMNS)[number]>,
  'received_at_ms'
> & { received_at_ms: string | number };
