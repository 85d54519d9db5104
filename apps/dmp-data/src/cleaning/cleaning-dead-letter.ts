import {
  CleanCode,
  CleaningErrorCode,
  type CleaningResult,
  DEAD_LETTER_BATCH_FORMAT,
  type DeadLetterEntry,
  DeadLetterProperty,
  deadLetterPropertyValue,
  describeRemovals,
  DEVICE_ID_PATTERN,
  encodeDeadLetterBatch,
  MESSAGE_ID_PATTERN,
} from '@dmp/contracts';
import type { OutgoingMessage } from '@dmp/messaging';

/** `dmp_source` of the dead letters cleaning writes. */
export const DEAD_LETTER_SOURCE_CLEANING = 'dmp-data';

/** Properties of a cleaning dead letter beyond @dmp/contracts' `DeadLetterProperty` (in `dead_letters.properties`). */
export const CleaningDeadLetterProperty = {
  /** `rejected`: nothing of the message was stored; `cleaned`: the rest of it was. */
  outcome: 'dmp_clean_outcome',
  /** Every distinct code, comma-separated (`dmp_error_code` holds the first). */
  codes: 'dmp_clean_codes',
  /** The metrics removed, comma-separated. */
  metrics: 'dmp_clean_metrics',
  /** The RocketMQ message the entry came in (`dmp_source_message_id` is the entry's own messageId). */
  rocketmqMessageId: 'dmp_rocketmq_message_id',
  /** Its message group (a pack's is its shard, `shard-N`). */
  rocketmqMessageGroup: 'dmp_rocketmq_message_group',
} as const;

/**
 * Where an entry came from: its RocketMQ message (a `RocketMqMessage` fits, but give `payload` only as
 * described).
 */
export interface CleaningSource {
  topic: string;
  /** The RocketMQ message id. */
  messageId: string;
  messageGroup?: string;
  deliveryAttempt?: number;
  /**
   * The entry's bytes as received, when it is the whole message body (not a pack: `message.body`): the
   * dead letter keeps them byte for byte. Without it the entry is serialized again ({@link serializeEntry}).
   */
  payload?: Buffer;
}

/** A cleaned or refused entry on its way to the dead-letter topic. */
export interface CleaningDeadLetter {
  /** `dmp_error_code`: the refusal's code, or the first removal's. */
  code: CleanCode;
  /** Every code, once each (the `reason`s to count). */
  codes: CleanCode[];
  deviceId?: string;
  entry: DeadLetterEntry;
  /** Bytes it adds to a batch, roughly (payload and properties). */
  size: number;
}

/** Protobuf framing of an entry and its map entries, generously. */
const ENTRY_OVERHEAD = 64;

/**
 * The dead letter of one entry cleaning changed — refused whole, or with metrics removed (`result.removed`
 * not empty): the original entry as payload, every code, and a readable message naming each removal.
 * `receivedAt` falls back to `nowMs` when the entry has none. Property values are made safe (no control
 * characters, bounded length): names and details come from devices.
 */
export function toCleaningDeadLetter(
  result: CleaningResult,
  entry: unknown,
  source: CleaningSource,
  instance: string,
  nowMs: number,
  traceparent?: string,
): CleaningDeadLetter {
  const codes = [
    ...new Set([
      ...(result.kind === 'rejected' ? [result.rejection.code] : []),
      ...result.removed.map((r) => r.code),
    ]),
  ];
  const code = codes[0];
  if (code === undefined) throw new Error('toCleaningDeadLetter: the entry was not cleaned');
  const payload = source.payload ?? serializeEntry(entry);
  const fields = isRecord(entry) ? entry : {};
  const messageId = validString(fields.messageId, MESSAGE_ID_PATTERN);
  // Not the message group as a fallback: a pack's group is its shard, not a device.
  const deviceId = validString(fields.deviceId, DEVICE_ID_PATTERN);
  const receivedAt = epochMillis(fields.receivedAt) ?? nowMs;

  const value = (text: string) => deadLetterPropertyValue(text);
  const properties: Record<string, string> = {
    [DeadLetterProperty.errorCode]: code,
    [DeadLetterProperty.errorMessage]: value(messageOf(result, fields)),
    [DeadLetterProperty.source]: DEAD_LETTER_SOURCE_CLEANING,
    [DeadLetterProperty.sourceInstance]: value(instance),
    [DeadLetterProperty.consumerGroup]: value(instance),
    [DeadLetterProperty.sourceTopic]: value(source.topic),
    [DeadLetterProperty.sourceMessageId]: value(messageId ?? source.messageId),
    [DeadLetterProperty.receivedAt]: String(Math.floor(receivedAt)),
    [DeadLetterProperty.contentType]: 'application/json',
    [DeadLetterProperty.payloadSize]: String(payload.length),
    [CleaningDeadLetterProperty.outcome]: result.kind === 'rejected' ? 'rejected' : 'cleaned',
    [CleaningDeadLetterProperty.codes]: codes.join(','),
    [CleaningDeadLetterProperty.rocketmqMessageId]: value(source.messageId),
  };
  if (result.removed.length > 0)
    properties[CleaningDeadLetterProperty.metrics] = value(result.removed.map((r) => r.metric).join(','));
  if (deviceId) properties[DeadLetterProperty.deviceId] = deviceId;
  // Not as `dmp_source_message_group`: dead_letters takes that for the device when there is none.
  if (source.messageGroup)
    properties[CleaningDeadLetterProperty.rocketmqMessageGroup] = value(source.messageGroup);
  if (source.deliveryAttempt !== undefined)
    properties[DeadLetterProperty.deliveryAttempt] = String(source.deliveryAttempt);
  if (traceparent) properties.traceparent = value(traceparent);

  let size = payload.length + ENTRY_OVERHEAD;
  for (const [name, text] of Object.entries(properties)) size += name.length + Buffer.byteLength(text);
  return { code, codes, ...(deviceId ? { deviceId } : {}), entry: { properties, payload }, size };
}

/** The readable `dmp_error_message`. */
function messageOf(result: CleaningResult, fields: Record<string, unknown>): string {
  if (result.kind === 'rejected') {
    const { code, detail } = result.rejection;
    // NoMetricsLeft's detail already lists the removals.
    return result.removed.length > 0 && code !== CleanCode.NoMetricsLeft
      ? `message refused: ${detail}; besides, metrics to remove: ${describeRemovals(result.removed)}`
      : `message refused: ${detail}`;
  }
  const total = isRecord(fields.metrics) ? Object.keys(fields.metrics).length : result.removed.length;
  const stored = Object.keys(result.telemetry.metrics).length;
  return `removed ${result.removed.length} of ${total} metric(s), ${stored} stored: ${describeRemovals(result.removed)}`;
}

/**
 * The RocketMQ message of a batch of cleaning dead letters: a `DeadLetterBatch` body (dmp-data's
 * dead-letter consumer stores each entry as a `dead_letters` row), the common code as the tag (or
 * `DMP_ERR_CLEAN` for mixed codes), the devices as keys (at most {@link MAX_KEYS}).
 */
export function toCleaningDeadLetterBatch(
  topic: string,
  instance: string,
  letters: readonly CleaningDeadLetter[],
): OutgoingMessage {
  const codes = new Set(letters.map((l) => l.code));
  const code = codes.size === 1 ? [...codes][0] : MIXED_TAG;
  const keys = [...new Set(letters.flatMap((l) => (l.deviceId ? [l.deviceId] : [])))].slice(0, MAX_KEYS);
  return {
    topic,
    body: encodeDeadLetterBatch(letters.map((l) => l.entry)),
    tag: code,
    ...(keys.length > 0 ? { keys } : {}),
    properties: {
      [DeadLetterProperty.format]: DEAD_LETTER_BATCH_FORMAT,
      [DeadLetterProperty.count]: String(letters.length),
      [DeadLetterProperty.errorCode]: code,
      [DeadLetterProperty.source]: DEAD_LETTER_SOURCE_CLEANING,
      [DeadLetterProperty.sourceInstance]: deadLetterPropertyValue(instance),
    },
  };
}

/** Tag of a batch whose entries have different codes (each entry keeps its own). */
const MIXED_TAG = CleaningErrorCode.Mixed;
/** RocketMQ keys travel in one property (16 KiB for all properties): device ids are ≤ 64 characters. */
const MAX_KEYS = 32;

/**
 * JSON of a parsed entry, without losing what JSON.stringify would: ±Infinity is written `1e999` /
 * `-1e999` (which JSON.parse reads back as ±Infinity) instead of `null`; NaN, which no JSON can carry,
 * stays `null` (the dead letter's message names it).
 */
export function serializeEntry(entry: unknown): Buffer {
  return Buffer.from(toJson(entry) ?? 'null', 'utf8');
}

function toJson(value: unknown): string | undefined {
  switch (typeof value) {
    case 'number':
      if (Number.isFinite(value)) return JSON.stringify(value);
      return Number.isNaN(value) ? 'null' : value > 0 ? '1e999' : '-1e999';
    case 'string':
    case 'boolean':
      return JSON.stringify(value);
    case 'object': {
      if (value === null) return 'null';
      if (Array.isArray(value)) return `[${value.map((item) => toJson(item) ?? 'null').join(',')}]`;
      const members: string[] = [];
      for (const [key, item] of Object.entries(value)) {
        const json = toJson(item);
        if (json !== undefined) members.push(`${JSON.stringify(key)}:${json}`);
      }
      return `{${members.join(',')}}`;
    }
    case 'bigint':
      return value.toString();
    default:
      return undefined; // undefined, functions, symbols: left out, as JSON.stringify does
  }
}

const validString = (value: unknown, pattern: RegExp): string | undefined =>
  typeof value === 'string' && pattern.test(value) ? value : undefined;

function epochMillis(value: unknown): number | undefined {
  return typeof value === 'number' && Number.isSafeInteger(value) && value > 0 ? value : undefined;
}

const isRecord = (value: unknown): value is Record<string, unknown> =>
  typeof value === 'object' && value !== null && !Array.isArray(value);
