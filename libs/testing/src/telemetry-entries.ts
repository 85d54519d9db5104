import { decodeTelemetryBody, normalizedTelemetrySchema, type NormalizedTelemetry } from '@dmp/contracts';
import type { MessageView } from 'rocketmq-client-nodejs';

/** One device message as a test reads it back from a telemetry topic. */
export interface ReceivedTelemetry {
  view: MessageView;
  /** Its position in the RocketMQ message (a pack), 0 for a single message. */
  index: number;
  telemetry: NormalizedTelemetry;
  traceparent?: string;
}

/**
 * The device messages a RocketMQ telemetry message carries (a pack's entries, or the single body);
 * bodies and entries that are not NormalizedTelemetry — other tests share some topics with
 * deliberately malformed ones — are skipped.
 */
export function receivedTelemetry(view: MessageView): ReceivedTelemetry[] {
  let entries;
  try {
    entries = decodeTelemetryBody(view.body, Object.fromEntries(view.properties));
  } catch {
    return [];
  }
  return entries.flatMap((entry, index) => {
    const parsed = normalizedTelemetrySchema.safeParse(entry.telemetry);
    return parsed.success
      ? [
          {
            view,
            index,
            telemetry: parsed.data,
            ...(entry.traceparent ? { traceparent: entry.traceparent } : {}),
          },
        ]
      : [];
  });
}

/** Orders received device messages as a consumer of their queue sees them: by offset, then position. */
export const inQueueOrder = (a: ReceivedTelemetry, b: ReceivedTelemetry): number =>
  Number(a.view.offset) - Number(b.view.offset) || a.index - b.index;
