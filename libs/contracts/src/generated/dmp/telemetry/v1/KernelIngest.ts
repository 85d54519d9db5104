// Original file: libs/contracts/src/proto/telemetry.proto

import type * as grpc from '@grpc/grpc-js'
import type { MethodDefinition } from '@grpc/proto-loader'
import type { IngestBatch as _dmp_telemetry_v1_IngestBatch, IngestBatch__Output as _dmp_telemetry_v1_IngestBatch__Output } from '../../../dmp/telemetry/v1/IngestBatch';
import type { IngestResult as _dmp_telemetry_v1_IngestResult, IngestResult__Output as _dmp_telemetry_v1_IngestResult__Output } from '../../../dmp/telemetry/v1/IngestResult';

export interface KernelIngestClient extends grpc.Client {
  /**
   * Returns once every accepted message of the batch is durably stored in RocketMQ. A device's messages
   * of one topic (events, snapshots) are stored in batch order; those behind one answered retryable
   * are not taken either (retryable, DMP_ERR_PRECEDING_FAILED), so a caller retrying them in order
   * keeps the device's order.
   */
  Ingest(argument: _dmp_telemetry_v1_IngestBatch, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_dmp_telemetry_v1_IngestResult__Output>): grpc.ClientUnaryCall;
  Ingest(argument: _dmp_telemetry_v1_IngestBatch, metadata: grpc.Metadata, callback: grpc.requestCallback<_dmp_telemetry_v1_IngestResult__Output>): grpc.ClientUnaryCall;
  Ingest(argument: _dmp_telemetry_v1_IngestBatch, options: grpc.CallOptions, callback: grpc.requestCallback<_dmp_telemetry_v1_IngestResult__Output>): grpc.ClientUnaryCall;
  Ingest(argument: _dmp_telemetry_v1_IngestBatch, callback: grpc.requestCallback<_dmp_telemetry_v1_IngestResult__Output>): grpc.ClientUnaryCall;
  /**
   * Returns once every accepted message of the batch is durably stored in RocketMQ. A device's messages
   * of one topic (events, snapshots) are stored in batch order; those behind one answered retryable
   * are not taken either (retryable, DMP_ERR_PRECEDING_FAILED), so a caller retrying them in order
   * keeps the device's order.
   */
  ingest(argument: _dmp_telemetry_v1_IngestBatch, metadata: grpc.Metadata, options: grpc.CallOptions, callback: grpc.requestCallback<_dmp_telemetry_v1_IngestResult__Output>): grpc.ClientUnaryCall;
  ingest(argument: _dmp_telemetry_v1_IngestBatch, metadata: grpc.Metadata, callback: grpc.requestCallback<_dmp_telemetry_v1_IngestResult__Output>): grpc.ClientUnaryCall;
  ingest(argument: _dmp_telemetry_v1_IngestBatch, options: grpc.CallOptions, callback: grpc.requestCallback<_dmp_telemetry_v1_IngestResult__Output>): grpc.ClientUnaryCall;
  ingest(argument: _dmp_telemetry_v1_IngestBatch, callback: grpc.requestCallback<_dmp_telemetry_v1_IngestResult__Output>): grpc.ClientUnaryCall;
  
}

export interface KernelIngestHandlers extends grpc.UntypedServiceImplementation {
  /**
   * Returns once every accepted message of the batch is durably stored in RocketMQ. A device's messages
   * of one topic (events, snapshots) are stored in batch order; those behind one answered retryable
   * are not taken either (retryable, DMP_ERR_PRECEDING_FAILED), so a caller retrying them in order
   * keeps the device's order.
   */
  Ingest: grpc.handleUnaryCall<_dmp_telemetry_v1_IngestBatch__Output, _dmp_telemetry_v1_IngestResult>;
  
}

export interface KernelIngestDefinition extends grpc.ServiceDefinition {
  Ingest: MethodDefinition<_dmp_telemetry_v1_IngestBatch, _dmp_telemetry_v1_IngestResult, _dmp_telemetry_v1_IngestBatch__Output, _dmp_telemetry_v1_IngestResult__Output>
}
