import { toTelemetryRows } from '@dmp/clickhouse';
import { DmpError, MessagingErrorCode, StorageErrorCode } from '@dmp/contracts';
import {
  isTelemetryPack,
  processTelemetryEntry,
  telemetryEntriesOf,
  type RocketMqMessage,
  type TelemetryEntry,
} from '@dmp/messaging';
import { linkTo, MetricsRegistry } from '@dmp/observability';
import { Inject, Injectable } from '@nestjs/common';
import type { Counter } from 'prom-client';
import { TelemetryCleaner } from '../cleaning/telemetry-cleaner.service';
import { DATA_CONFIG, type DataConfig } from '../config';
import { TelemetryBatchWriter } from '../storage/telemetry-batch-writer';

/** `dmp_data_messages_total` outcomes, per device message. */
type Outcome = 'stored' | 'cleaned_out' | 'invalid_json' | 'unstorable' | 'failed';

/**
 * Handles one telemetry message from RocketMQ — a pack of device messages, or a single one: cleans each
 * device message (`TelemetryCleaner`: what it removes or refuses is dead-lettered with its reason), and
 * resolves once the rows of all of them are durable in ClickHouse (the consumer then acks). Each device
 * message is handled in its own trace (`processTelemetryEntry`).
 *
 * Failures, after every entry was tried, throw the first one: a storage or dead-letter failure that is
 * retryable redelivers the whole message (the entries already stored replace themselves), one that is
 * not dead-letters it whole. A body that is not JSON or not a pack is dead-lettered whole.
 */
@Injectable()
export class TelemetryConsumer {
  private readonly messages: Counter<'topic' | 'outcome'>;

  constructor(
    private readonly writer: TelemetryBatchWriter,
    private readonly cleaner: TelemetryCleaner,
    metrics: MetricsRegistry,
    @Inject(DATA_CONFIG) private readonly config: DataConfig,
  ) {
    this.messages = metrics.counter(
      'dmp_data_messages_total',
      'Telemetry device messages handled, by outcome',
      ['topic', 'outcome'],
    );
  }

  async handle(message: RocketMqMessage): Promise<void> {
    let entries: TelemetryEntry[];
    try {
      entries = telemetryEntriesOf(message);
    } catch (error) {
      this.count(message, 'invalid_json');
      throw new DmpError(MessagingErrorCode.InvalidMessage, (error as Error).message, false);
    }
    const results = await Promise.allSettled(
      entries.map((entry) =>
        processTelemetryEntry(message, entry, this.config.data.consumerGroup, () =>
          this.store(message, entry),
        ),
      ),
    );
    const failure = results.find((result) => result.status === 'rejected');
    if (failure) throw failure.reason;
  }

  private async store(message: RocketMqMessage, entry: TelemetryEntry): Promise<void> {
    const telemetry = await this.cleaner.clean(entry.telemetry, {
      topic: message.topic,
      messageId: message.messageId,
      messageGroup: message.messageGroup,
      deliveryAttempt: message.deliveryAttempt,
      // A single message's body is the entry: the dead letter keeps its bytes.
      ...(isTelemetryPack(message) ? {} : { payload: message.body }),
    });
    if (!telemetry) return this.count(message, 'cleaned_out');
    try {
      await this.writer.store(toTelemetryRows(telemetry), linkTo(entry));
      this.count(message, 'stored');
    } catch (error) {
      const unstorable = error instanceof DmpError && error.code === StorageErrorCode.Unstorable;
      this.count(message, unstorable ? 'unstorable' : 'failed');
      throw error;
    }
  }

  private count(message: RocketMqMessage, outcome: Outcome): void {
    this.messages.inc({ topic: message.topic, outcome });
  }
}
