import type * as grpc from '@grpc/grpc-js';
import type { EnumTypeDefinition, MessageTypeDefinition } from '@grpc/proto-loader';

import type { DevicePayload as _dmp_telemetry_v1_DevicePayload, DevicePayload__Output as _dmp_telemetry_v1_DevicePayload__Output } from './dmp/telemetry/v1/DevicePayload';
import type { IngestBatch as _dmp_telemetry_v1_IngestBatch, IngestBatch__Output as _dmp_telemetry_v1_IngestBatch__Output } from './dmp/telemetry/v1/IngestBatch';
import type { IngestOutcome as _dmp_telemetry_v1_IngestOutcome, IngestOutcome__Output as _dmp_telemetry_v1_IngestOutcome__Output } from './dmp/telemetry/v1/IngestOutcome';
import type { IngestResult as _dmp_telemetry_v1_IngestResult, IngestResult__Output as _dmp_telemetry_v1_IngestResult__Output } from './dmp/telemetry/v1/IngestResult';
import type { KernelIngestClient as _dmp_telemetry_v1_KernelIngestClient, KernelIngestDefinition as _dmp_telemetry_v1_KernelIngestDefinition } from './dmp/telemetry/v1/KernelIngest';
import type { MetricValue as _dmp_telemetry_v1_MetricValue, MetricValue__Output as _dmp_telemetry_v1_MetricValue__Output } from './dmp/telemetry/v1/MetricValue';
import type { Telemetry as _dmp_telemetry_v1_Telemetry, Telemetry__Output as _dmp_telemetry_v1_Telemetry__Output } from './dmp/telemetry/v1/Telemetry';

type SubtypeConstructor<Constructor extends new (...args: any) => any, Subtype> = {
  new(...args: ConstructorParameters<Constructor>): Subtype;
};

export interface ProtoGrpcType {
  dmp: {
    telemetry: {
      v1: {
        DevicePayload: MessageTypeDefinition<_dmp_telemetry_v1_DevicePayload, _dmp_telemetry_v1_DevicePayload__Output>
        IngestBatch: MessageTypeDefinition<_dmp_telemetry_v1_IngestBatch, _dmp_telemetry_v1_IngestBatch__Output>
        IngestOutcome: MessageTypeDefinition<_dmp_telemetry_v1_IngestOutcome, _dmp_telemetry_v1_IngestOutcome__Output>
        IngestResult: MessageTypeDefinition<_dmp_telemetry_v1_IngestResult, _dmp_telemetry_v1_IngestResult__Output>
        KernelIngest: SubtypeConstructor<typeof grpc.Client, _dmp_telemetry_v1_KernelIngestClient> & { service: _dmp_telemetry_v1_KernelIngestDefinition }
        Kind: EnumTypeDefinition
        MetricValue: MessageTypeDefinition<_dmp_telemetry_v1_MetricValue, _dmp_telemetry_v1_MetricValue__Output>
        Telemetry: MessageTypeDefinition<_dmp_telemetry_v1_Telemetry, _dmp_telemetry_v1_Telemetry__Output>
      }
    }
  }
}

