import { DmpError, normalizedTelemetrySchema, type NormalizedTelemetry } from '@dmp/contracts';
import type { RocketMqMessage } from '@dmp/messaging';
import { linkTo, MetricsRegistry } from '@dmp/observability';
import { Injectable } from '@nestjs/common';
import type { Counter } from 'prom-client';
import { StorageErrorCode } from '../storage/batch-writer';
import { TelemetryBatchWriter } from '../storage/telemetry-batch-writer';
import { toTelemetryRows } from '../storage/telemetry-rows';

export const DataErrorCode = {
  /** The body is not JSON or not a NormalizedTelemetry: dead-lettered, never retried. */
  InvalidMessage: 'DMP_ERR_INVALID_MESSAGE',
} as const;

/** `dmp_data_messages_total` outcomes. */
type Outcome = 'stored' | 'invalid_json' | 'invalid_schema' | 'unstorable' | 'failed';

/**
 * Handles one telemetry message from RocketMQ: validates it, and resolves once its rows are durable
 * in ClickHouse (the consumer then acks). Invalid messages throw a non-retryable DmpError (the
 * consumer dead-letters them); storage failures throw what the writer threw (retryable →
 * redelivered; unstorable → dead-lettered).
 */
@Injectable()
export class TelemetryConsumer {
  private readonly messages: Counter<'topic' | 'outcome'>;

  constructor(
    private readonly writer: TelemetryBatchWriter,
    metrics: MetricsRegistry,
  ) {
    this.messages = metrics.counter('dmp_data_messages_total', 'Telemetry messages handled, by outcome', [
      'topic',
      'outcome',
    ]);
  }

  async handle(message: RocketMqMessage): Promise<void> {
    const telemetry = this.parse(message);
    try {
      await this.writer.store(
        toTelemetryRows(telemetry),
        linkTo({ traceparent: message.properties.traceparent, tracestate: message.properties.tracestate }),
      );
      this.count(message, 'stored');
    } catch (error) {
      const unstorable = error instanceof DmpError && error.code === StorageErrorCode.Unstorable;
      this.count(message, unstorable ? 'unstorable' : 'failed');
      throw error;
    }
  }

  private parse(message: RocketMqMessage): NormalizedTelemetry {
    let json: unknown;
    try {
      json = JSON.parse(message.body.toString('utf8'));
    } catch (error) {
      this.count(message, 'invalid_json');
      throw new DmpError(
        DataErrorCode.InvalidMessage,
        `body is not JSON: ${(error as Error).message}`,
        false,
      );
    }
    const result = normalizedTelemetrySchema.safeParse(json);
    if (!result.success) {
      this.count(message, 'invalid_schema');
      const issues = result.error.issues
        .slice(0, 5)
        .map((i) => `${i.path.join('.') || '(root)'}: ${i.message}`);
      throw new DmpError(
        DataErrorCode.InvalidMessage,
        `not a NormalizedTelemetry: ${issues.join('; ')}`,
        false,
      );
    }
    return result.data;
  }

  private count(message: RocketMqMessage, outcome: Outcome): void {
    this.messages.inc({ topic: message.topic, outcome });
  }
}
