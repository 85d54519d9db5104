import { DmpError, normalizedTelemetrySchema, type NormalizedTelemetry } from '@dmp/contracts';
import {
  processTelemetryEntry,
  telemetryEntriesOf,
  type RocketMqMessage,
  type TelemetryEntry,
} from '@dmp/messaging';
import { linkTo, MetricsRegistry } from '@dmp/observability';
import { Inject, Injectable } from '@nestjs/common';
import type { Counter } from 'prom-client';
import { DATA_CONFIG, type DataConfig } from '../config';
import { StorageErrorCode } from '../storage/batch-writer';
import { TelemetryBatchWriter } from '../storage/telemetry-batch-writer';
import { toTelemetryRows } from '../storage/telemetry-rows';

export const DataErrorCode = {
  /** The body is not JSON, not a pack, or an entry not a NormalizedTelemetry: dead-lettered, never retried. */
  InvalidMessage: 'DMP_ERR_INVALID_MESSAGE',
} as const;

/** `dmp_data_messages_total` outcomes, per device message. */
type Outcome = 'stored' | 'invalid_json' | 'invalid_schema' | 'unstorable' | 'failed';

/**
 * Handles one telemetry message from RocketMQ — a pack of device messages, or a single one: validates
 * each device message, and resolves once all their rows are durable in ClickHouse (the consumer then
 * acks). Each device message is handled in its own trace (`processTelemetryEntry`).
 *
 * Failures, after every entry was tried: a storage failure throws what the writer threw (retryable →
 * the whole message is redelivered, and the entries already stored replace themselves; unstorable →
 * dead-lettered); invalid entries throw a non-retryable DmpError naming them (the consumer dead-letters
 * the message, whose valid entries are stored already and replace themselves if it is replayed).
 */
@Injectable()
export class TelemetryConsumer {
  private readonly messages: Counter<'topic' | 'outcome'>;

  constructor(
    private readonly writer: TelemetryBatchWriter,
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
      throw new DmpError(DataErrorCode.InvalidMessage, (error as Error).message, false);
    }
    const results = await Promise.allSettled(
      entries.map((entry) =>
        processTelemetryEntry(message, entry, this.config.data.consumerGroup, () =>
          this.store(message, entry),
        ),
      ),
    );
    const failures = results.flatMap((result, index) =>
      result.status === 'rejected' ? [{ index, error: result.reason as unknown }] : [],
    );
    if (failures.length === 0) return;
    // Storage failures decide (redelivery, or the writer's verdict); else the invalid entries do.
    const storage = failures.find(({ error }) => !isInvalidEntry(error));
    if (storage) throw storage.error;
    const detail = failures
      .slice(0, 5)
      .map(({ index, error }) => `entry ${index}: ${(error as Error).message}`)
      .join('; ');
    throw new DmpError(
      DataErrorCode.InvalidMessage,
      entries.length === 1
        ? (failures[0].error as Error).message
        : `${failures.length} of ${entries.length} entries invalid (${detail})`,
      false,
    );
  }

  private async store(message: RocketMqMessage, entry: TelemetryEntry): Promise<void> {
    const telemetry = this.parse(message, entry.telemetry);
    try {
      await this.writer.store(toTelemetryRows(telemetry), linkTo(entry));
      this.count(message, 'stored');
    } catch (error) {
      const unstorable = error instanceof DmpError && error.code === StorageErrorCode.Unstorable;
      this.count(message, unstorable ? 'unstorable' : 'failed');
      throw error;
    }
  }

  private parse(message: RocketMqMessage, json: unknown): NormalizedTelemetry {
    const result = normalizedTelemetrySchema.safeParse(json);
    if (result.success) return result.data;
    this.count(message, 'invalid_schema');
    const issues = result.error.issues
      .slice(0, 5)
      .map((i) => `${i.path.join('.') || '(root)'}: ${i.message}`);
    throw new InvalidEntryError(`not a NormalizedTelemetry: ${issues.join('; ')}`);
  }

  private count(message: RocketMqMessage, outcome: Outcome): void {
    this.messages.inc({ topic: message.topic, outcome });
  }
}

class InvalidEntryError extends DmpError {
  constructor(message: string) {
    super(DataErrorCode.InvalidMessage, message, false);
  }
}

const isInvalidEntry = (error: unknown): boolean => error instanceof InvalidEntryError;
