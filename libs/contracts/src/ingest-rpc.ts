/**
 * The types of dmp-kernel's `KernelIngest` gRPC service, derived from `proto/telemetry.proto` once:
 * `generated/` is the output of @grpc/proto-loader's own type generator (`npm run proto:types`, offline,
 * from node_modules), with the loader options below; `ingest-rpc.spec.ts` fails when the .proto changed
 * and `generated/` was not regenerated. dmp-kernel (server), dmp-mqtt (client) and the tests use these,
 * never shapes of their own.
 */
import type { IngestBatch__Output } from './generated/dmp/telemetry/v1/IngestBatch';
import type { IngestOutcome__Output } from './generated/dmp/telemetry/v1/IngestOutcome';
import type { IngestResult__Output } from './generated/dmp/telemetry/v1/IngestResult';
import type { KernelIngestClient } from './generated/dmp/telemetry/v1/KernelIngest';
import type { Kind__Output } from './generated/dmp/telemetry/v1/Kind';
import type { MetricValue__Output } from './generated/dmp/telemetry/v1/MetricValue';
import type { Telemetry__Output } from './generated/dmp/telemetry/v1/Telemetry';
import type { ProtoGrpcType } from './generated/telemetry';

/**
 * @grpc/proto-loader options for telemetry.proto, on both sides: camelCase fields, 64-bit integers as
 * numbers, enums as names, defaults filled in, the oneof's name set. The generated types assume them
 * (the generator's flags in package.json's `proto:types` are these; the spec checks it).
 */
export const TELEMETRY_LOADER_OPTIONS = {
  keepCase: false,
  longs: Number,
  enums: String,
  defaults: true,
  oneofs: true,
} as const;

/** `dmp.telemetry.v1.Kind` by name. */
export type KindName = Kind__Output;

/** A `MetricValue` as received: `value` names the member of the oneof that is set (undefined when none). */
export type MetricValueMessage = MetricValue__Output;

/** A `Telemetry` as received (dmp-kernel, or a stand-in kernel): every field present, defaults filled. */
export type TelemetryMessage = Telemetry__Output;

/** An `IngestBatch` as received. */
export type IngestBatch = IngestBatch__Output;

/** One message's answer: accepted, or refused with a stable `DMP_ERR_*` code, retryable or not. */
export type IngestOutcome = IngestOutcome__Output;

/** The answer to an Ingest call: one outcome per message. */
export type IngestResult = IngestResult__Output;

/** Exactly one member of a oneof `T` set (a request's metric value: `{number}`, `{flag}` or `{text}`). */
type OneOf<T, K extends keyof T> = { [P in K]-?: { [Q in P]-?: NonNullable<T[Q]> } }[K];

/** A metric value as a client builds it. */
export type MetricValueRequest = OneOf<MetricValueMessage, 'number' | 'flag' | 'text'>;

/** A `Telemetry` as a client builds it: a kind that is not UNSPECIFIED, the optional fields optional. */
export type TelemetryRequest = Omit<
  TelemetryMessage,
  'kind' | 'metrics' | 'seq' | 'traceparent' | 'tracestate'
> & {
  kind: Exclude<KindName, 'KIND_UNSPECIFIED'>;
  metrics: Record<string, MetricValueRequest>;
  seq?: number;
  traceparent?: string;
  tracestate?: string;
};

/** A grpc-js client of `KernelIngest` as `loadPackageDefinition` makes it. */
export type KernelIngestStub = KernelIngestClient;

/** What `loadPackageDefinition(loadSync(TELEMETRY_PROTO_PATH, TELEMETRY_LOADER_OPTIONS))` returns. */
export type TelemetryGrpcPackage = ProtoGrpcType;
