import {
  CleanCode,
  CleaningErrorCode,
  type CleaningLimits,
  cleanTelemetry,
  describeRemovals,
  DmpError,
  errorMessage,
  type NormalizedTelemetry,
} from '@dmp/contracts';
import type { RocketMqProducer } from '@dmp/messaging';
import { injectTraceContext, type MetricsRegistry } from '@dmp/observability';
import { Logger } from '@nestjs/common';
import { context, ROOT_CONTEXT, trace, type Link } from '@opentelemetry/api';
import type { Counter } from 'prom-client';
import {
  toCleaningDeadLetter,
  toCleaningDeadLetterBatch,
  type CleaningDeadLetter,
  type CleaningSource,
} from './cleaning-dead-letter';
import { PackedSender, type PackedSenderOptions } from './packed-sender';

export type { CleaningSource } from './cleaning-dead-letter';

export interface TelemetryCleanerOptions {
  limits: CleaningLimits;
  /** Where removed and refused entries go (ROCKETMQ_TOPIC_DEAD_LETTER). */
  deadLetterTopic: string;
  /** dmp-data's consumer group: the dead letters' `source_instance`. */
  instance: string;
  /** A started producer for `deadLetterTopic` (dmp-data's consumer dead-letter producer). */
  producer: Pick<RocketMqProducer, 'send'>;
  metrics: MetricsRegistry;
  /** Packing of dead letters into RocketMQ messages; defaults {@link DEFAULT_PACKING}. */
  packing?: PackedSenderOptions;
  /** The clock timestamps are checked against. */
  now?: () => number;
}

/**
 * Packing of cleaning dead letters: a lone one goes at once; under a flood of bad data (a device fleet
 * with a broken sensor) concurrent ones share `DeadLetterBatch` messages — a few round trips, not one
 * per message, and never more than 4 sends competing with the consumer's own on the connection.
 */
export const DEFAULT_PACKING: PackedSenderOptions = {
  maxItems: 256,
  maxBytes: 1024 * 1024,
  maxConcurrentSends: 4,
};

const LOG_INTERVAL_MS = 10_000;
/** A send span links at most this many of the messages it carries (OpenTelemetry's default cap is 128). */
const MAX_LINKS = 128;

interface Letter extends CleaningDeadLetter {
  link?: Link;
}

/**
 * Cleans telemetry entries before they are stored (see `cleanTelemetry`) and dead-letters what it
 * removed or refused — one `dead_letters` row per cleaned entry, with the original entry as payload —
 * before the caller acknowledges anything: {@link clean} resolves only once the dead letter is in
 * RocketMQ. Counts `dmp_data_cleaned_total{reason}` (per removed metric, or per refused message) once
 * it is, so a redelivery after a failed send does not count twice.
 */
export class TelemetryCleaner {
  private readonly log = new Logger('TelemetryCleaner');
  private readonly sender: PackedSender<Letter>;
  private readonly cleaned: Counter<'reason'>;
  private readonly now: () => number;
  private lastLogAt = 0;
  private unlogged = 0;

  constructor(private readonly options: TelemetryCleanerOptions) {
    this.now = options.now ?? Date.now;
    this.sender = new PackedSender<Letter>(options.packing ?? DEFAULT_PACKING, {
      sizeOf: (letter) => letter.size,
      send: (letters) => this.send(letters),
    });
    this.cleaned = options.metrics.counter(
      'dmp_data_cleaned_total',
      'Telemetry removed by cleaning before storage, by DMP_ERR_CLEAN_* reason: metric values for per-metric reasons, messages for whole-message ones',
      ['reason'],
    );
    // Every reason from the start: rate() and alerts see a series before the first bad message.
    for (const reason of Object.values(CleanCode)) this.cleaned.inc({ reason }, 0);
  }

  /**
   * Cleans one parsed entry (the JSON of a telemetry message; non-finite numbers allowed). Resolves to
   * what to store — the entry without the metrics that had to go — or `undefined` when nothing of it may
   * be stored; in both cases only after whatever was removed is durably on the dead-letter topic. Throws
   * a retryable DmpError `DMP_ERR_CLEAN_DEAD_LETTER_FAILED` when that send failed (redeliver the
   * message), a non-retryable `DMP_ERR_CLEAN_DEAD_LETTER_REFUSED` when RocketMQ refused the dead letter
   * for good (dead-letter the whole message). Call it in the message's trace context: the dead letter
   * carries it.
   */
  async clean(entry: unknown, source: CleaningSource): Promise<NormalizedTelemetry | undefined> {
    const now = this.now();
    const result = cleanTelemetry(entry, this.options.limits, now);
    if (result.kind === 'accepted' && result.removed.length === 0) return result.telemetry;

    const active = context.active();
    const spanContext = trace.getSpanContext(active);
    const letter: Letter = {
      ...toCleaningDeadLetter(
        result,
        entry,
        source,
        this.options.instance,
        now,
        injectTraceContext(active).traceparent,
      ),
      ...(spanContext ? { link: { context: spanContext } } : {}),
    };
    trace.getSpan(active)?.addEvent('dmp.clean', {
      'dmp.clean.outcome': result.kind === 'rejected' ? 'rejected' : 'cleaned',
      'dmp.clean.codes': letter.codes,
      'dmp.clean.removed_metrics': result.removed.length,
    });

    try {
      await this.sender.add(letter);
    } catch (error) {
      const refused = error instanceof DmpError && !error.retryable;
      const text = errorMessage(error);
      throw new DmpError(
        refused ? CleaningErrorCode.DeadLetterRefused : CleaningErrorCode.DeadLetterFailed,
        `the dead letter of cleaned ${source.topic} message ${source.messageId} (${letter.code}) ` +
          `${refused ? 'was refused' : 'could not be sent'}: ${text}`,
        !refused,
        { cause: error },
      );
    }

    if (result.kind === 'rejected') this.cleaned.inc({ reason: result.rejection.code });
    else for (const removal of result.removed) this.cleaned.inc({ reason: removal.code });
    this.logCleaned(
      source,
      letter,
      result.kind === 'rejected'
        ? `refused (${result.rejection.code}): ${result.rejection.detail}`
        : `stored without ${describeRemovals(result.removed)}`,
    );
    return result.kind === 'accepted' ? result.telemetry : undefined;
  }

  private async send(letters: readonly Letter[]): Promise<void> {
    const message = toCleaningDeadLetterBatch(this.options.deadLetterTopic, this.options.instance, letters);
    message.links = letters.flatMap((l) => (l.link ? [l.link] : [])).slice(0, MAX_LINKS);
    // A batch belongs to no single message's trace: its send span is a root, linked to each message.
    await context.with(ROOT_CONTEXT, () => this.options.producer.send(message));
  }

  /** Bad data comes in floods: one line per interval, with the count of the others. */
  private logCleaned(source: CleaningSource, letter: Letter, what: string): void {
    const now = this.now();
    if (now - this.lastLogAt < LOG_INTERVAL_MS) {
      this.unlogged++;
      return;
    }
    const others = this.unlogged > 0 ? ` (and ${this.unlogged} more cleaned since the last report)` : '';
    this.lastLogAt = now;
    this.unlogged = 0;
    const device = letter.deviceId ? `device ${letter.deviceId}, ` : '';
    this.log.warn(
      `${source.topic} message ${source.messageId} (${device}dead-lettered) ${what}${others}`.slice(0, 2048),
    );
  }
}
