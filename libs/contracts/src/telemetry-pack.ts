import type { NormalizedTelemetry } from './telemetry';

/**
 * Telemetry on RocketMQ travels in packs. dmp-kernel hashes each device to one of a fixed number of
 * shards and sends one shard's messages in one RocketMQ message (message group = the shard, so a
 * shard — hence each of its devices — stays in order): the broker and the proxy do their per-message
 * work once per pack instead of once per device message, and a FIFO receive of 32 messages carries
 * thousands of device messages instead of 32.
 *
 * Body of a pack (`dmp_format` = {@link TELEMETRY_PACK_FORMAT}): UTF-8 JSON
 * `{"entries":[{"telemetry":{…NormalizedTelemetry},"traceparent":"…","tracestate":"…"}, …]}`, entries in
 * the order they were produced. Each entry carries its own message's trace context (its `create` span),
 * so consumers continue one trace per device message; the RocketMQ message's own `traceparent` is the
 * pack's `send` span.
 *
 * A message without `dmp_format` is a single NormalizedTelemetry as its JSON body (what tools and older
 * producers send), with the message's own trace context: consumers read both.
 */
export const TelemetryProperty = {
  /** {@link TELEMETRY_PACK_FORMAT} on a pack; absent on a single message. */
  format: 'dmp_format',
  /** Entries in a pack. */
  count: 'dmp_count',
} as const;

export const TELEMETRY_PACK_FORMAT = 'dmp.telemetry.pack.v1';

/** One device message inside a pack, before validation (consumers validate each entry on its own). */
export interface TelemetryPackEntry<T = NormalizedTelemetry> {
  telemetry: T;
  traceparent?: string;
  tracestate?: string;
}

/** An entry's JSON, made once when the entry is packed (its length is what the pack's size counts). */
export const telemetryPackEntryJson = (entry: TelemetryPackEntry): string => JSON.stringify(entry);

/** The body of a pack from its entries' JSON ({@link telemetryPackEntryJson}). */
export const encodeTelemetryPack = (entryJsons: readonly string[]): Buffer =>
  Buffer.from(`{"entries":[${entryJsons.join(',')}]}`, 'utf8');

/** Message group of a shard: FIFO per shard keeps every device of it in order. */
export const telemetryShardGroup = (shard: number): string => `shard-${shard}`;

/** The device's shard (FNV-1a of its id): stable across kernel replicas and restarts. */
export function telemetryShardOf(deviceId: string, shards: number): number {
  let hash = 0x811c9dc5;
  for (let i = 0; i < deviceId.length; i++) {
    hash ^= deviceId.charCodeAt(i);
    hash = Math.imul(hash, 0x01000193);
  }
  return (hash >>> 0) % shards;
}

/**
 * The device messages of a telemetry message body, not validated yet: a pack's entries, or the body
 * itself as one entry with the message's trace context. Throws a plain Error saying what is wrong when
 * the body is not JSON or not a pack.
 */
export function decodeTelemetryBody(
  body: Buffer,
  properties: Readonly<Record<string, string>>,
): TelemetryPackEntry<unknown>[] {
  let json: unknown;
  try {
    json = JSON.parse(body.toString('utf8'));
  } catch (error) {
    throw new Error(`body is not JSON: ${(error as Error).message}`, { cause: error });
  }
  const format = properties[TelemetryProperty.format];
  if (format === undefined)
    return [{ telemetry: json, traceparent: properties.traceparent, tracestate: properties.tracestate }];
  if (format !== TELEMETRY_PACK_FORMAT) throw new Error(`unknown ${TelemetryProperty.format} '${format}'`);
  const entries = (json as { entries?: unknown } | null)?.entries;
  if (!Array.isArray(entries)) throw new Error('a telemetry pack without an "entries" array');
  return entries.map((entry: unknown) => {
    const { telemetry, traceparent, tracestate } = (entry ?? {}) as Record<string, unknown>;
    return {
      telemetry,
      ...(typeof traceparent === 'string' ? { traceparent } : {}),
      ...(typeof tracestate === 'string' ? { tracestate } : {}),
    };
  });
}
