import {
  type DeviceMetadata,
  DmpError,
  errorMessage,
  type NormalizedTelemetry,
  type TelemetryKind,
} from '@dmp/contracts';
import { extractTraceContext, MetricsRegistry, recordFailure, startSpanLazily } from '@dmp/observability';
import { Inject, Injectable } from '@nestjs/common';
import { context, SpanKind, SpanStatusCode, trace, type Link, type Span } from '@opentelemetry/api';
import { KERNEL_CONFIG, type KernelConfig } from '../config';
import { toTelemetryEnvelope } from '../normalization/telemetry.mapper';
import { Normalizer } from '../normalization/normalizer';
import { PrecedingItemFailedError } from '../publishing/lane-packer';
import { TelemetryPublisher } from '../publishing/telemetry.publisher';
import type { IngestOutcome, TelemetryMessage } from './telemetry.proto-types';

/** Codes of outcomes decided by the kernel itself (validation codes come from @dmp/contracts). */
export const KernelErrorCode = {
  /** Too many snapshot sends in flight: snapshots lag or are shed, events never are. */
  ShedSnapshot: 'DMP_ERR_SHED_SNAPSHOT',
  /** Not sent because an earlier message of the same device and topic failed (order). */
  PrecedingFailed: 'DMP_ERR_PRECEDING_FAILED',
  Internal: 'DMP_ERR_INTERNAL',
} as const;

type Outcome = 'accepted' | 'invalid' | 'shed' | 'held' | 'failed' | 'rejected';

const tracer = trace.getTracer('dmp-kernel');
const BATCH_SIZE_BUCKETS = [1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2500];

/**
 * One Ingest call: each message is validated, normalized and published in its own CONSUMER span
 * (parent: the device's trace context carried by the message), then answered. The messages are
 * handed to the publisher in batch order in one go, without waiting for each other: the publisher's
 * packer stores a device's messages in that order, and fails those behind a failed one (answered
 * `held`, retryable), so a burst of one device costs one pack round trip, not one per message.
 */
@Injectable()
export class IngestService {
  private snapshotsInFlight = 0;
  private readonly messagesTotal;
  private readonly ingestSeconds;
  private readonly batchSize;
  private readonly inFlight;
  private readonly shedTotal;

  constructor(
    private readonly normalizer: Normalizer,
    private readonly publisher: TelemetryPublisher,
    metrics: MetricsRegistry,
    @Inject(KERNEL_CONFIG) private readonly config: KernelConfig,
  ) {
    this.messagesTotal = metrics.counter(
      'dmp_kernel_messages_total',
      'Ingested messages by kind and outcome (accepted | invalid | shed | held | failed | rejected)',
      ['kind', 'outcome'],
    );
    this.ingestSeconds = metrics.histogram('dmp_kernel_ingest_seconds', 'Time to answer one Ingest batch');
    this.batchSize = metrics.histogram(
      'dmp_kernel_batch_messages',
      'Messages per Ingest batch',
      [],
      BATCH_SIZE_BUCKETS,
    );
    this.inFlight = metrics.gauge('dmp_kernel_in_flight', 'Messages being normalized or published', ['kind']);
    this.shedTotal = metrics.counter(
      'dmp_kernel_shed_total',
      'Messages shed under pressure (snapshots only)',
      ['kind'],
    );
  }

  async ingest(messages: readonly TelemetryMessage[]): Promise<IngestOutcome[]> {
    const stopTimer = this.ingestSeconds.startTimer();
    this.batchSize.observe(messages.length);
    const call = trace.getSpanContext(context.active());
    const callLink = call && { context: call };
    // Enrichment: the batch's devices' metadata in one lookup (cache, else one Redis round trip); a
    // failure is reported by each message.
    const metadata = await this.normalizer
      .lookup(messages.map((m) => m.deviceId))
      .catch((error: unknown) => ({
        error,
      }));
    /** `device\0topic` streams whose earlier message was shed or failed here: later ones must wait for it. */
    const held = new Set<string>();
    // ingestOne hands its message off before its first await, so this hands them all off in batch order.
    const outcomes = await Promise.all(messages.map((m) => this.ingestOne(m, held, metadata, callLink)));
    stopTimer();
    return outcomes;
  }

  private async ingestOne(
    message: TelemetryMessage,
    held: Set<string>,
    metadata: Map<string, DeviceMetadata> | { error: unknown },
    callLink?: Link,
  ): Promise<IngestOutcome> {
    const carrier = { traceparent: message.traceparent, tracestate: message.tracestate };
    const parent = extractTraceContext(carrier, context.active());
    const span = startSpanLazily(
      tracer,
      'process kernel.ingest',
      {
        kind: SpanKind.CONSUMER,
        // The message continues the device's trace; the batch call it came in is a link.
        ...(message.traceparent && callLink ? { links: [callLink] } : {}),
      },
      parent,
      () => ({
        'rpc.system': 'grpc',
        'rpc.service': 'dmp.telemetry.v1.KernelIngest',
        'rpc.method': 'Ingest',
        'messaging.message.id': message.messageId,
        'dmp.device.id': message.deviceId,
      }),
    );
    const mapped = toTelemetryEnvelope(message);
    const kind = mapped.ok ? mapped.envelope.kind : 'unknown';
    span.setAttribute('dmp.telemetry.kind', kind);
    this.inFlight.inc({ kind });
    try {
      if (!mapped.ok) return this.answer(span, message, kind, 'invalid', mapped.code, mapped.message, false);
      const { envelope } = mapped;
      return await context.with(trace.setSpan(parent, span), () =>
        this.publish(span, message, envelope.kind, held, () => {
          if (!(metadata instanceof Map)) throw metadata.error;
          return this.normalizer.normalize(envelope, metadata.get(envelope.deviceId));
        }),
      );
    } finally {
      this.inFlight.dec({ kind });
      span.end();
    }
  }

  /** Hands the message to the publisher before its first await (see ingest). */
  private async publish(
    span: Span,
    message: TelemetryMessage,
    kind: TelemetryKind,
    held: Set<string>,
    normalize: () => NormalizedTelemetry,
  ): Promise<IngestOutcome> {
    const stream = `${message.deviceId}\u0000${this.publisher.topicOf(kind)}`;
    if (held.has(stream)) return this.answerHeld(span, message, kind);

    const snapshot = kind === 'snapshot';
    if (snapshot && this.snapshotsInFlight >= this.config.kernel.snapshotMaxInFlight) {
      held.add(stream);
      this.shedTotal.inc({ kind });
      return this.answer(
        span,
        message,
        kind,
        'shed',
        KernelErrorCode.ShedSnapshot,
        'snapshot shed under load',
        true,
      );
    }
    if (snapshot) this.snapshotsInFlight += 1;
    try {
      await this.publisher.publish(normalize());
      return this.answer(span, message, kind, 'accepted');
    } catch (error) {
      if (error instanceof PrecedingItemFailedError) return this.answerHeld(span, message, kind);
      recordFailure(span, error);
      const failure =
        error instanceof DmpError ? error : new DmpError(KernelErrorCode.Internal, errorMessage(error), true);
      if (failure.retryable) held.add(stream);
      return this.answer(
        span,
        message,
        kind,
        failure.retryable ? 'failed' : 'rejected',
        failure.code,
        failure.message,
        failure.retryable,
      );
    } finally {
      if (snapshot) this.snapshotsInFlight -= 1;
    }
  }

  private answerHeld(span: Span, message: TelemetryMessage, kind: TelemetryKind): IngestOutcome {
    return this.answer(
      span,
      message,
      kind,
      'held',
      KernelErrorCode.PrecedingFailed,
      'not sent: an earlier message of this device failed',
      true,
    );
  }

  private answer(
    span: Span,
    message: TelemetryMessage,
    kind: string,
    outcome: Outcome,
    errorCode = '',
    errorMessage = '',
    retryable = false,
  ): IngestOutcome {
    this.messagesTotal.inc({ kind, outcome });
    span.setAttribute('dmp.outcome', outcome);
    if (errorCode) {
      span.setAttribute('dmp.error.code', errorCode);
      if (outcome !== 'failed' && outcome !== 'rejected')
        span.setStatus({ code: SpanStatusCode.ERROR, message: `${errorCode}: ${errorMessage}` });
    }
    return {
      messageId: message.messageId,
      accepted: outcome === 'accepted',
      errorCode,
      errorMessage,
      retryable,
    };
  }
}
