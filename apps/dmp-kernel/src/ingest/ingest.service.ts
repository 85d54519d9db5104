import {
  DmpError,
  errorMessage,
  type DeviceMetadata,
  type IngestOutcome,
  KernelErrorCode,
  type NormalizedTelemetry,
  type TelemetryKind,
  type TelemetryMessage,
} from '@dmp/contracts';
import { extractTraceContext, MetricsRegistry, recordFailure, startSpanLazily } from '@dmp/observability';
import { Inject, Injectable } from '@nestjs/common';
import { context, SpanKind, SpanStatusCode, trace, type Link, type Span } from '@opentelemetry/api';
import { KERNEL_CONFIG, type KernelConfig } from '../config';
import { Normalizer } from '../normalization/normalizer';
import { ItemCancelledError, PrecedingItemFailedError } from '../publishing/lane-packer';
import { TelemetryPublisher } from '../publishing/telemetry.publisher';
import { toTelemetryEnvelope, type MappingResult } from './telemetry.mapper';

/**
 * An Ingest call refused before anything of it was handled: a lane (topic and shard) it would add to
 * already holds KERNEL_PACK_LANE_MAX_MESSAGES or _BYTES waiting. Retryable: nothing of the call was sent.
 */
export class LaneFullError extends DmpError {
  constructor(
    readonly lane: string,
    readonly waiting: { items: number; bytes: number },
  ) {
    super(
      KernelErrorCode.LaneFull,
      `lane ${lane} is full (${waiting.items} messages, ${waiting.bytes} bytes wait for RocketMQ); ` +
        'nothing of this call was taken, retry later',
      true,
    );
  }
}

type Outcome = 'accepted' | 'invalid' | 'shed' | 'held' | 'failed' | 'rejected' | 'full' | 'cancelled';

const tracer = trace.getTracer('dmp-kernel');
const BATCH_SIZE_BUCKETS = [1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2500];

/**
 * One Ingest call: each message is validated, normalized and published in its own CONSUMER span
 * (parent: the device's trace context carried by the message), then answered. The messages are
 * handed to the publisher in batch order in one go, without waiting for each other: the publisher's
 * packer stores a device's messages in that order, and fails those behind a failed one (answered
 * `held`, retryable), so a burst of one device costs one pack round trip, not one per message.
 * Part of the per-device order invariant: see docs/engineering.md, "Per-device order".
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
      'Ingested messages by kind and outcome (accepted | invalid | shed | held | failed | rejected | ' +
        'full: call refused, a lane was full | cancelled: call cancelled or past its deadline, not sent)',
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

  /**
   * `signal`: aborts when the call is cancelled or its deadline passes. Then nothing more of the call
   * is handed to the publisher, and what still waits in its lanes is dropped (answered `cancelled`;
   * nobody reads the answer). Throws LaneFullError, before handling anything, when a lane the batch
   * would add to is full.
   */
  async ingest(messages: readonly TelemetryMessage[], signal?: AbortSignal): Promise<IngestOutcome[]> {
    const stopTimer = this.ingestSeconds.startTimer();
    this.batchSize.observe(messages.length);
    const call = trace.getSpanContext(context.active());
    const callLink = call && { context: call };
    const mapped = messages.map((m) => toTelemetryEnvelope(m));
    try {
      if (signal?.aborted) return this.cancelled(messages, mapped);
      // Enrichment: the batch's devices' metadata in one lookup (cache, else one Redis round trip); a
      // failure is reported by each message.
      const metadata = await this.normalizer
        .lookup(messages.map((m) => m.deviceId))
        .catch((error: unknown) => ({
          error,
        }));
      if (signal?.aborted) return this.cancelled(messages, mapped);
      // Checked in the turn that adds the batch: a lane holds at most its bound plus one batch.
      const full = this.publisher.fullLane(
        new Set(
          mapped.flatMap((m) => (m.ok ? [this.publisher.laneOf(m.envelope.kind, m.envelope.deviceId)] : [])),
        ),
      );
      if (full) {
        for (const m of mapped) this.messagesTotal.inc({ kind: kindOf(m), outcome: 'full' });
        throw new LaneFullError(full.lane, full);
      }
      /** `device\0topic` streams whose earlier message was shed or failed here: later ones must wait for it. */
      const held = new Set<string>();
      // ingestOne hands its message off before its first await, so this hands them all off in batch order.
      return await Promise.all(
        messages.map((m, i) => this.ingestOne(m, mapped[i], held, metadata, callLink, signal)),
      );
    } finally {
      stopTimer();
    }
  }

  /** The answer to a call cancelled before its messages were handed off: none of them is sent. */
  private cancelled(
    messages: readonly TelemetryMessage[],
    mapped: readonly MappingResult[],
  ): IngestOutcome[] {
    return messages.map((message, i) => {
      this.messagesTotal.inc({ kind: kindOf(mapped[i]), outcome: 'cancelled' });
      return cancelledOutcome(message);
    });
  }

  private async ingestOne(
    message: TelemetryMessage,
    mapped: MappingResult,
    held: Set<string>,
    metadata: Map<string, DeviceMetadata> | { error: unknown },
    callLink?: Link,
    signal?: AbortSignal,
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
    const kind = kindOf(mapped);
    span.setAttribute('dmp.telemetry.kind', kind);
    this.inFlight.inc({ kind });
    try {
      if (!mapped.ok) return this.answer(span, message, kind, 'invalid', mapped.code, mapped.message, false);
      const { envelope } = mapped;
      return await context.with(trace.setSpan(parent, span), () =>
        this.publish(
          span,
          message,
          envelope.kind,
          held,
          () => {
            if (!(metadata instanceof Map)) throw metadata.error;
            return this.normalizer.normalize(envelope, metadata.get(envelope.deviceId));
          },
          signal,
        ),
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
    signal?: AbortSignal,
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
      await this.publisher.publish(normalize(), signal);
      return this.answer(span, message, kind, 'accepted');
    } catch (error) {
      if (error instanceof PrecedingItemFailedError) return this.answerHeld(span, message, kind);
      if (error instanceof ItemCancelledError) {
        const { errorCode, errorMessage } = cancelledOutcome(message);
        return this.answer(span, message, kind, 'cancelled', errorCode, errorMessage, true);
      }
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

const kindOf = (mapped: MappingResult): string => (mapped.ok ? mapped.envelope.kind : 'unknown');

const cancelledOutcome = (message: TelemetryMessage): IngestOutcome => ({
  messageId: message.messageId,
  accepted: false,
  errorCode: KernelErrorCode.CallCancelled,
  errorMessage: 'not sent: the call was cancelled or its deadline passed',
  retryable: true,
});
