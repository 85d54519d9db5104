// Original file: libs/contracts/src/proto/telemetry.proto

import type { Telemetry as _dmp_telemetry_v1_Telemetry, Telemetry__Output as _dmp_telemetry_v1_Telemetry__Output } from '../../../dmp/telemetry/v1/Telemetry';

export interface IngestBatch {
  'messages'?: (_dmp_telemetry_v1_Telemetry)[];
}

export interface IngestBatch__Output {
  'messages': (_dmp_telemetry_v1_Telemetry__Output)[];
}
