/**
 * Shapes of `dmp.telemetry.v1` messages as @grpc/proto-loader hands them over with the options in
 * `grpc.options.ts` (camelCase, longs as numbers, enums as names, defaults filled, oneof name set).
 */
export interface MetricValueMessage {
  /** Which member of the `value` oneof is set (undefined when none). */
  value?: 'number' | 'flag' | 'text';
  number?: number;
  flag?: boolean;
  text?: string;
}

export type KindName = 'KIND_UNSPECIFIED' | 'KIND_TELEMETRY' | 'KIND_EVENT' | 'KIND_SNAPSHOT';

export interface TelemetryMessage {
  deviceId: string;
  messageId: string;
  /** A `KindName`; an unknown number arrives as its string form. */
  kind: string;
  ts: number;
  seq: number;
  metrics: Record<string, MetricValueMessage>;
  receivedAt: number;
  traceparent: string;
  tracestate: string;
}

export interface IngestBatch {
  messages: TelemetryMessage[];
}

export interface IngestOutcome {
  messageId: string;
  accepted: boolean;
  errorCode: string;
  errorMessage: string;
  retryable: boolean;
}

export interface IngestResult {
  outcomes: IngestOutcome[];
}
