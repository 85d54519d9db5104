import type { TelemetryEnvelope } from '@dmp/contracts';
import { hash } from 'node:crypto';

/** The two ways a message is recognised as seen before. */
export type DuplicateKind = 'message_id' | 'content';

export interface DedupKey {
  kind: DuplicateKind;
  /** Redis key (also the local key). */
  key: string;
  windowMs: number;
}

/**
 * `dmp:dedup:id:{deviceId}/{messageId}`. `/` separates them because it is in neither pattern (both may
 * contain `:`), so two different pairs never make the same key.
 */
export const messageIdKey = (deviceId: string, messageId: string) => `dmp:dedup:id:${deviceId}/${messageId}`;

/**
 * `dmp:dedup:content:{deviceId}/{hash}` of what the message says — kind, device timestamp, seq and
 * metrics (in a canonical order) — everything but its message id and trace context: a device that sends
 * the same reading again under a new message id (a retry after a reboot, a firmware bug) is caught by
 * this. `seq` belongs to the content: two readings a device numbered differently are two readings, even
 * in the same millisecond with the same values (a device without `seq` has only ts and values to tell
 * them apart).
 */
export function contentKey(
  envelope: Pick<TelemetryEnvelope, 'deviceId' | 'kind' | 'ts' | 'seq' | 'metrics'>,
): string {
  const digest = hash('sha256', canonicalContent(envelope), 'base64url').slice(0, 32);
  return `dmp:dedup:content:${envelope.deviceId}/${digest}`;
}

export function canonicalContent(
  envelope: Pick<TelemetryEnvelope, 'kind' | 'ts' | 'seq' | 'metrics'>,
): string {
  const { kind, ts, seq, metrics } = envelope;
  const sorted = Object.keys(metrics)
    .sort()
    .map((name) => [name, metrics[name]]);
  return JSON.stringify([kind, ts, seq ?? null, sorted]);
}

/** The keys to check for a message, given the configured windows (a 0 window turns its check off). */
export function dedupKeys(
  envelope: Pick<TelemetryEnvelope, 'deviceId' | 'messageId' | 'kind' | 'ts' | 'seq' | 'metrics'>,
  windows: { messageIdWindowMs: number; contentWindowMs: number },
): DedupKey[] {
  const keys: DedupKey[] = [];
  if (windows.messageIdWindowMs > 0)
    keys.push({
      kind: 'message_id',
      key: messageIdKey(envelope.deviceId, envelope.messageId),
      windowMs: windows.messageIdWindowMs,
    });
  if (windows.contentWindowMs > 0)
    keys.push({ kind: 'content', key: contentKey(envelope), windowMs: windows.contentWindowMs });
  return keys;
}
