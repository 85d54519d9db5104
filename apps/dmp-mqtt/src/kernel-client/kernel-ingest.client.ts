import {
  TELEMETRY_PROTO_PATH,
  type MetricValue,
  type TelemetryEnvelope,
  type TelemetryKind,
} from '@dmp/contracts';
import type { TraceCarrier } from '@dmp/observability';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';

/** `dmp.telemetry.v1.Telemetry` as @grpc/proto-loader takes it (camelCase fields, enum names, int64 as number). */
export interface TelemetryMessage {
  deviceId: string;
  messageId: string;
  kind: 'KIND_TELEMETRY' | 'KIND_EVENT' | 'KIND_SNAPSHOT';
  ts: number;
  seq: number;
  metrics: Record<string, { number: number } | { flag: boolean } | { text: string }>;
  receivedAt: number;
  traceparent: string;
  tracestate: string;
}

/** `dmp.telemetry.v1.IngestOutcome`. */
export interface IngestOutcome {
  messageId: string;
  accepted: boolean;
  errorCode: string;
  errorMessage: string;
  retryable: boolean;
}

/** Options for loading telemetry.proto: the same wire format whatever the other side uses. */
export const PROTO_LOADER_OPTIONS: protoLoader.Options = {
  keepCase: false,
  longs: Number,
  enums: String,
  defaults: true,
  oneofs: true,
};

const KIND: Record<TelemetryKind, TelemetryMessage['kind']> = {
  telemetry: 'KIND_TELEMETRY',
  event: 'KIND_EVENT',
  snapshot: 'KIND_SNAPSHOT',
};

export function toTelemetryMessage(envelope: TelemetryEnvelope, carrier: TraceCarrier): TelemetryMessage {
  return {
    deviceId: envelope.deviceId,
    messageId: envelope.messageId,
    kind: KIND[envelope.kind],
    ts: envelope.ts,
    seq: envelope.seq ?? 0,
    metrics: Object.fromEntries(
      Object.entries(envelope.metrics).map(([name, value]) => [name, metricValue(value)]),
    ),
    receivedAt: envelope.receivedAt,
    traceparent: carrier.traceparent ?? '',
    tracestate: carrier.tracestate ?? '',
  };
}

function metricValue(value: MetricValue): TelemetryMessage['metrics'][string] {
  if (typeof value === 'number') return { number: value };
  if (typeof value === 'boolean') return { flag: value };
  return { text: value };
}

interface KernelIngestStub extends grpc.Client {
  Ingest(
    request: { messages: TelemetryMessage[] },
    options: grpc.CallOptions,
    callback: (error: grpc.ServiceError | null, response?: { outcomes?: IngestOutcome[] }) => void,
  ): grpc.ClientUnaryCall;
}

type KernelIngestConstructor = new (
  address: string,
  credentials: grpc.ChannelCredentials,
  options?: grpc.ChannelOptions,
) => KernelIngestStub;

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
    const definition = protoLoader.loadSync(TELEMETRY_PROTO_PATH, PROTO_LOADER_OPTIONS);
    const loaded = grpc.loadPackageDefinition(definition) as unknown as {
      dmp: { telemetry: { v1: { KernelIngest: KernelIngestConstructor } } };
    };
    this.stub = new loaded.dmp.telemetry.v1.KernelIngest(url, grpc.credentials.createInsecure(), {
      'grpc.keepalive_time_ms': 20_000,
      'grpc.keepalive_timeout_ms': 10_000,
      'grpc.keepalive_permit_without_calls': 1,
      // Reconnect quickly after dmp-kernel restarts: messages wait meanwhile.
      'grpc.initial_reconnect_backoff_ms': 200,
      'grpc.max_reconnect_backoff_ms': 2_000,
    });
  }

  /** One Ingest call. Rejects on any call failure (unreachable, deadline, status ≠ OK). */
  ingest(messages: TelemetryMessage[]): Promise<IngestOutcome[]> {
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
