import { errorMessage, type IngestOutcome, type TelemetryEnvelope } from '@dmp/contracts';
import {
  HealthRegistry,
  linkTo,
  MetricsRegistry,
  recordFailure,
  type TraceCarrier,
} from '@dmp/observability';
import { Inject, Injectable, Logger, type OnApplicationShutdown } from '@nestjs/common';
import { context, ROOT_CONTEXT, SpanKind, trace, type Link } from '@opentelemetry/api';
import { MQTT_APP_CONFIG, type MqttAppConfig } from '../config';
import { encodeTelemetry, KernelIngestClient, type EncodedTelemetry } from './kernel-ingest.client';
import { OrderedBatcher, type FinalOutcome } from './ordered-batcher';

/** Bound of one Ingest request (dmp-kernel takes up to KERNEL_GRPC_MAX_MESSAGE_BYTES, 16 MiB by default). */
const MAX_BATCH_BYTES = 1024 * 1024;
/** A message's framing in the batch: its field tag and length. */
const MESSAGE_FRAMING_BYTES = 6;
const FAILURE_LOG_INTERVAL_MS = 10_000;
const BATCH_SIZE_BUCKETS = [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000];

/**
 * Hands accepted device messages to dmp-kernel: micro-batched, per-device ordered, retried (see
 * {@link OrderedBatcher}). `forward` resolves once the kernel answered for the message for good; it
 * rejects with `HandOffAbandonedError` when the message must be left to the broker's redelivery.
 */
@Injectable()
export class KernelForwarder implements OnApplicationShutdown {
  private readonly log = new Logger('KernelForwarder');
  private readonly batcher: OrderedBatcher<EncodedTelemetry>;
  private readonly tracer = trace.getTracer('dmp-mqtt');
  private failedCalls = 0;
  private lastFailureLogAt = 0;

  constructor(
    @Inject(MQTT_APP_CONFIG) config: MqttAppConfig,
    private readonly client: KernelIngestClient,
    metrics: MetricsRegistry,
    health: HealthRegistry,
  ) {
    const batchSize = metrics.histogram(
      'dmp_mqtt_kernel_batch_size',
      'Messages per Ingest call',
      [],
      BATCH_SIZE_BUCKETS,
    );
    const callSeconds = metrics.histogram('dmp_mqtt_kernel_call_seconds', 'Duration of Ingest calls', [
      'result',
    ]);
    const retries = metrics.counter(
      'dmp_mqtt_kernel_retries_total',
      'Messages retried after a failed or retryable Ingest',
    );
    const abandoned = metrics.counter(
      'dmp_mqtt_kernel_abandoned_total',
      'Messages given up (left unacknowledged for the broker to redeliver)',
      ['reason'],
    );
    const k = config.ingest.kernel;
    this.batcher = new OrderedBatcher<EncodedTelemetry>(
      {
        maxBatchSize: k.maxBatchMessages,
        maxPerKey: k.maxPerDevice,
        maxBatchBytes: MAX_BATCH_BYTES,
        lingerMs: k.batchLingerMs,
        maxConcurrentBatches: k.maxConcurrentCalls,
        retry: k.retry,
      },
      (messages) => this.send(messages),
      {
        onBatchDone: (size, seconds, error) => {
          batchSize.observe(size);
          callSeconds.observe({ result: error === undefined ? 'ok' : 'error' }, seconds);
          // Logged outside any message's trace: a batch belongs to none of them.
          context.with(ROOT_CONTEXT, () => this.noteCallResult(size, error));
        },
        onRetry: () => retries.inc(),
        onAbandon: (reason) => abandoned.inc({ reason }),
      },
    );
    const batcher = this.batcher;
    metrics.gauge(
      'dmp_mqtt_kernel_pending',
      'Messages waiting for dmp-kernel (batched, in a call, or retrying)',
      [],
      function () {
        this.set(batcher.pending);
      },
    );
    health.register('kernel', () => {
      const state = this.client.connectivity();
      return { up: state === 'READY' || state === 'IDLE', detail: { url: this.client.url, state } };
    });
  }

  /** Logs the first failure, then at most one summary per interval while failing, and the recovery. */
  private noteCallResult(size: number, error: unknown): void {
    const now = Date.now();
    if (error === undefined) {
      if (this.failedCalls > 0)
        this.log.log(`dmp-kernel answers again after ${this.failedCalls} failed call(s)`);
      this.failedCalls = 0;
      return;
    }
    this.failedCalls++;
    if (this.failedCalls === 1 || now - this.lastFailureLogAt >= FAILURE_LOG_INTERVAL_MS) {
      this.lastFailureLogAt = now;
      this.log.warn(
        `Ingest call (${size} message(s)) failed, ${this.failedCalls} in a row; retrying: ${errorMessage(error)}`,
      );
    }
  }

  forward(envelope: TelemetryEnvelope, carrier: TraceCarrier, signal: AbortSignal): Promise<FinalOutcome> {
    const message = encodeTelemetry(envelope, carrier);
    return this.batcher.submit(envelope.deviceId, message, {
      signal,
      bytes: message.bytes.length + MESSAGE_FRAMING_BYTES,
    });
  }

  /**
   * One Ingest call, in its own trace: a batch span linked to every message's process span (the kernel
   * continues each message's own trace from its `traceparent`).
   */
  private async send(messages: readonly EncodedTelemetry[]): Promise<(IngestOutcome | undefined)[]> {
    const links = messages
      .map((m) => linkTo({ traceparent: m.traceparent || undefined, tracestate: m.tracestate || undefined }))
      .filter((link): link is Link => link !== undefined);
    const span = this.tracer.startSpan(
      'send dmp.telemetry.v1.KernelIngest/Ingest',
      {
        kind: SpanKind.PRODUCER,
        links,
        attributes: { 'messaging.batch.message_count': messages.length, 'server.address': this.client.url },
      },
      ROOT_CONTEXT,
    );
    try {
      const outcomes = await context.with(trace.setSpan(ROOT_CONTEXT, span), () =>
        this.client.ingest(messages),
      );
      return alignOutcomes(messages, outcomes);
    } catch (error) {
      recordFailure(span, error);
      throw error;
    } finally {
      span.end();
    }
  }

  /** After the transport drained (beforeApplicationShutdown): give up what is left and close the channel. */
  async onApplicationShutdown(): Promise<void> {
    await this.batcher.close();
    this.client.close();
  }
}

/** Outcomes by position when the kernel answered in order (the usual case), else by message id. */
export function alignOutcomes(
  messages: readonly EncodedTelemetry[],
  outcomes: readonly IngestOutcome[],
): (IngestOutcome | undefined)[] {
  if (
    outcomes.length === messages.length &&
    outcomes.every((o, i) => o.messageId === messages[i].messageId)
  ) {
    return [...outcomes];
  }
  const byId = new Map<string, IngestOutcome[]>();
  for (const outcome of outcomes) {
    const list = byId.get(outcome.messageId);
    if (list) list.push(outcome);
    else byId.set(outcome.messageId, [outcome]);
  }
  return messages.map((m) => byId.get(m.messageId)?.shift());
}
