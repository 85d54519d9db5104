import {
  type IngestOutcome,
  type MetricValue,
  type MetricValueRequest,
  TELEMETRY_LOADER_OPTIONS,
  TELEMETRY_PROTO_PACKAGE,
  TELEMETRY_PROTO_PATH,
  type TelemetryEnvelope,
  type TelemetryKind,
  telemetryProtoEnum,
  telemetryProtoType,
  type TelemetryRequest,
} from '@dmp/contracts';
import type { TraceCarrier } from '@dmp/observability';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import protobuf from 'protobufjs';

/**
 * A message encoded once, as it arrives, as the `Telemetry` bytes of the Ingest request: what waits for
 * the call (up to the MQTT Receive Maximum of them) is one buffer, and the call only frames the buffers.
 */
export interface EncodedTelemetry {
  messageId: string;
  traceparent: string;
  tracestate: string;
  bytes: Uint8Array;
}

const TelemetryType = telemetryProtoType('Telemetry');
const KIND_NUMBER = telemetryProtoEnum('Kind');
const KIND: Record<TelemetryKind, number> = {
  telemetry: KIND_NUMBER.KIND_TELEMETRY,
  event: KIND_NUMBER.KIND_EVENT,
  snapshot: KIND_NUMBER.KIND_SNAPSHOT,
};

export function encodeTelemetry(envelope: TelemetryEnvelope, carrier: TraceCarrier): EncodedTelemetry {
  const metrics: TelemetryRequest['metrics'] = {};
  for (const name in envelope.metrics) metrics[name] = metricValue(envelope.metrics[name]);
  const traceparent = carrier.traceparent ?? '';
  const tracestate = carrier.tracestate ?? '';
  // `encode` takes the plain object as it is (the enum as its number); `fromObject` would copy it first.
  const bytes = TelemetryType.encode({
    deviceId: envelope.deviceId,
    messageId: envelope.messageId,
    kind: KIND[envelope.kind],
    ts: envelope.ts,
    seq: envelope.seq ?? 0,
    metrics,
    receivedAt: envelope.receivedAt,
    traceparent,
    tracestate,
  }).finish();
  return { messageId: envelope.messageId, traceparent, tracestate, bytes };
}

function metricValue(value: MetricValue): MetricValueRequest {
  if (typeof value === 'number') return { number: value };
  if (typeof value === 'boolean') return { flag: value };
  return { text: value };
}

/** `IngestBatch { repeated Telemetry messages = 1; }` from already encoded messages. */
export function encodeIngestBatch({ messages }: { messages: readonly EncodedTelemetry[] }): Buffer {
  const writer = protobuf.Writer.create();
  for (const message of messages) writer.uint32((1 << 3) | 2).bytes(message.bytes);
  return Buffer.from(writer.finish());
}

interface KernelIngestStub extends grpc.Client {
  Ingest(
    request: { messages: readonly EncodedTelemetry[] },
    options: grpc.CallOptions,
    callback: (error: grpc.ServiceError | null, response?: { outcomes?: IngestOutcome[] }) => void,
  ): grpc.ClientUnaryCall;
}

type KernelIngestConstructor = new (
  address: string,
  credentials: grpc.ChannelCredentials,
  options?: grpc.ChannelOptions,
) => KernelIngestStub;

/** gRPC service config of the channel to dmp-kernel: round_robin over the resolved addresses. */
export const KERNEL_SERVICE_CONFIG = JSON.stringify({ loadBalancingConfig: [{ round_robin: {} }] });

/**
 * dmp-kernel's `KernelIngest` service over @grpc/grpc-js directly rather than Nest's `ClientGrpc`: the
 * batcher works with promises, per-call deadlines and the channel's connectivity state (the health check),
 * which grpc-js exposes as they are; `ClientGrpc` would wrap each call in an Observable and hide the channel.
 */
export class KernelIngestClient {
  private readonly stub: KernelIngestStub;

  constructor(
    readonly url: string,
    private readonly callTimeoutMs: number,
  ) {
    const definition = protoLoader.loadSync(TELEMETRY_PROTO_PATH, TELEMETRY_LOADER_OPTIONS);
    const service = definition[`${TELEMETRY_PROTO_PACKAGE}.KernelIngest`] as grpc.ServiceDefinition;
    // proto-loader's method (path, answer decoding), the request framed from the encoded messages.
    const KernelIngest = grpc.makeGenericClientConstructor(
      { Ingest: { ...service.Ingest, requestSerialize: encodeIngestBatch } },
      'KernelIngest',
    ) as unknown as KernelIngestConstructor;
    this.stub = new KernelIngest(url, grpc.credentials.createInsecure(), {
      'grpc.keepalive_time_ms': 20_000,
      'grpc.keepalive_timeout_ms': 10_000,
      'grpc.keepalive_permit_without_calls': 1,
      // Reconnect quickly after dmp-kernel restarts: messages wait meanwhile.
      'grpc.initial_reconnect_backoff_ms': 200,
      'grpc.max_reconnect_backoff_ms': 2_000,
      // Every address the target resolves to gets calls in turn. A name with several addresses (a
      // headless Kubernetes Service, `dns:///dmp-kernel-grpc…`) spreads calls over every kernel pod
      // instead of pinning them to the first (grpc-js' default, pick_first); one address behaves as before.
      'grpc.service_config': KERNEL_SERVICE_CONFIG,
    });
  }

  /** One Ingest call. Rejects on any call failure (unreachable, deadline, status ≠ OK). */
  ingest(messages: readonly EncodedTelemetry[]): Promise<IngestOutcome[]> {
    return new Promise((resolve, reject) => {
      this.stub.Ingest({ messages }, { deadline: Date.now() + this.callTimeoutMs }, (error, response) => {
        if (error) reject(error);
        else resolve(response?.outcomes ?? []);
      });
    });
  }

  /** READY, IDLE, CONNECTING, TRANSIENT_FAILURE or SHUTDOWN; asks an idle channel to connect. */
  connectivity(): string {
    return grpc.connectivityState[this.stub.getChannel().getConnectivityState(true)];
  }

  close(): void {
    this.stub.close();
  }
}
