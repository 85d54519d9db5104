import {
  diag,
  DiagLogLevel,
  type Attributes,
  type Context,
  type DiagLogger,
  type Link,
  type SpanKind,
} from '@opentelemetry/api';
import { ExportResultCode, type ExportResult } from '@opentelemetry/core';
import { OTLPTraceExporter } from '@opentelemetry/exporter-trace-otlp-grpc';
import { GrpcInstrumentation } from '@opentelemetry/instrumentation-grpc';
import { HttpInstrumentation } from '@opentelemetry/instrumentation-http';
import { resourceFromAttributes } from '@opentelemetry/resources';
import { NodeSDK } from '@opentelemetry/sdk-node';
import {
  BatchSpanProcessor,
  ParentBasedSampler,
  TraceIdRatioBasedSampler,
  type ReadableSpan,
  type Sampler,
  type SamplingResult,
  type SpanExporter,
} from '@opentelemetry/sdk-trace';
import { ATTR_SERVICE_NAME } from '@opentelemetry/semantic-conventions';
import { hostname } from 'node:os';
import { hasDeviceParent } from './trace-context';

export interface TelemetryOptions {
  serviceName: string;
  enabled: boolean;
  otlpEndpoint: string;
  sampleRatio: number;
}

/** Span export counters, read by the metrics module (`dmp_otel_spans_*`). */
export const spanExportStats = { exported: 0, failed: 0, dropped: () => 0 };

/** Counts what the exporter really delivered, so a silently full queue shows up in metrics. */
class CountingExporter implements SpanExporter {
  constructor(private readonly inner: SpanExporter) {}
  export(spans: ReadableSpan[], done: (result: ExportResult) => void): void {
    this.inner.export(spans, (result) => {
      if (result.code === ExportResultCode.SUCCESS) spanExportStats.exported += spans.length;
      else spanExportStats.failed += spans.length;
      done(result);
    });
  }
  shutdown(): Promise<void> {
    return this.inner.shutdown();
  }
  forceFlush(): Promise<void> {
    return this.inner.forceFlush?.() ?? Promise.resolve();
  }
}

export interface Telemetry {
  shutdown(): Promise<void>;
}

/**
 * Starts OpenTelemetry tracing. Call it first in `main.ts`, before Nest and the libraries it
 * instruments (http, gRPC) are loaded. MQTT and RocketMQ spans are made by DMP itself.
 */
export function startTelemetry(options: TelemetryOptions, logger?: DiagLogger): Telemetry {
  if (!options.enabled) return { shutdown: async () => undefined };
  if (logger) diag.setLogger(logger, DiagLogLevel.WARN);

  // Jaeger ingests OTLP natively, so no Jaeger-specific exporter (deprecated upstream) is needed.
  const exporter = new OTLPTraceExporter({ url: options.otlpEndpoint });
  const processor = new BatchSpanProcessor({
    exporter: new CountingExporter(exporter),
    maxQueueSize: 20_000,
    maxExportBatchSize: 1_000,
    scheduledDelayMillis: 1_000,
  });
  // The SDK keeps the count of spans it dropped on a full queue private; read it for the metric.
  spanExportStats.dropped = () =>
    (processor as unknown as { _droppedSpansCount?: number })._droppedSpansCount ?? 0;

  const sdk = new NodeSDK({
    resource: resourceFromAttributes({
      [ATTR_SERVICE_NAME]: options.serviceName,
      // Which replica made a span (the pod's name on Kubernetes, and the process).
      'service.instance.id': `${hostname()}:${process.pid}`,
    }),
    autoDetectResources: false,
    sampler: new DmpSampler(options.sampleRatio),
    spanProcessors: [processor],
    instrumentations: [
      new HttpInstrumentation({ ignoreIncomingRequestHook: isScrape }),
      new GrpcInstrumentation({ ignoreGrpcMethods: UNTRACED_GRPC_METHODS }),
    ],
  });
  sdk.start();
  return { shutdown: () => sdk.shutdown() };
}

/**
 * DMP's head sampler: parent-based between DMP's own services (a hop follows the decision made where
 * the trace entered the platform), the trace-id ratio (OTEL_TRACES_SAMPLE_RATIO) for new traces — and for
 * spans whose parent is a device's context (extractDeviceTraceContext): a device's sampled flag is not
 * trusted, the ratio decides on its trace id, the same way in every service.
 */
export class DmpSampler implements Sampler {
  private readonly ratio: Sampler;
  private readonly parentBased: Sampler;

  constructor(sampleRatio: number) {
    this.ratio = new TraceIdRatioBasedSampler(sampleRatio);
    this.parentBased = new ParentBasedSampler({ root: this.ratio });
  }

  shouldSample(
    context: Context,
    traceId: string,
    spanName: string,
    spanKind: SpanKind,
    attributes: Attributes,
    links: Link[],
  ): SamplingResult {
    const sampler = hasDeviceParent(context) ? this.ratio : this.parentBased;
    return sampler.shouldSample(context, traceId, spanName, spanKind, attributes, links);
  }

  toString(): string {
    return `DmpSampler{device parents and roots: ${this.ratio.toString()}, others: parent-based}`;
  }
}

/**
 * gRPC calls not worth a span each: the RocketMQ client's (DMP makes its own messaging spans for sends
 * and receives; its long polls, acks and heartbeats would be a span per call, most of them roots) and the
 * OTLP exporter's. Ignored methods are not wrapped at all, so they cost nothing per call.
 */
const UNTRACED_GRPC_METHODS = [
  // apache.rocketmq.v2.MessagingService
  'QueryRoute',
  'Heartbeat',
  'SendMessage',
  'QueryAssignment',
  'ReceiveMessage',
  'AckMessage',
  'ForwardMessageToDeadLetterQueue',
  'PullMessage',
  'UpdateOffset',
  'GetOffset',
  'QueryOffset',
  'EndTransaction',
  'Telemetry',
  'NotifyClientTermination',
  'ChangeInvisibleDuration',
  'RecallMessage',
  'SyncLiteSubscription',
  // opentelemetry.proto.collector.trace.v1.TraceService
  'Export',
];

const isScrape = (request: { url?: string }) => request.url === '/metrics' || request.url === '/health';
