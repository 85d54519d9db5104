// Original file: libs/contracts/src/proto/telemetry.proto

import type { IngestOutcome as _dmp_telemetry_v1_IngestOutcome, IngestOutcome__Output as _dmp_telemetry_v1_IngestOutcome__Output } from '../../../dmp/telemetry/v1/IngestOutcome';

export interface IngestResult {
  'outcomes'?: (_dmp_telemetry_v1_IngestOutcome)[];
}

export interface IngestResult__Output {
  'outcomes': (_dmp_telemetry_v1_IngestOutcome__Output)[];
}
