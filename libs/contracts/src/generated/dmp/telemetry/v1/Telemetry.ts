// Original file: libs/contracts/src/proto/telemetry.proto

import type { Kind as _dmp_telemetry_v1_Kind, Kind__Output as _dmp_telemetry_v1_Kind__Output } from '../../../dmp/telemetry/v1/Kind';
import type { MetricValue as _dmp_telemetry_v1_MetricValue, MetricValue__Output as _dmp_telemetry_v1_MetricValue__Output } from '../../../dmp/telemetry/v1/MetricValue';
import type { Long } from '@grpc/proto-loader';

export interface Telemetry {
  'deviceId'?: (string);
  'messageId'?: (string);
  'kind'?: (_dmp_telemetry_v1_Kind);
  'ts'?: (number | string | Long);
  'seq'?: (number | string | Long);
  'metrics'?: ({[key: string]: _dmp_telemetry_v1_MetricValue});
  'receivedAt'?: (number | string | Long);
  'traceparent'?: (string);
  'tracestate'?: (string);
}

export interface Telemetry__Output {
  'deviceId': (string);
  'messageId': (string);
  'kind': (_dmp_telemetry_v1_Kind__Output);
  'ts': (number);
  'seq': (number);
  'metrics': ({[key: string]: _dmp_telemetry_v1_MetricValue__Output});
  'receivedAt': (number);
  'traceparent': (string);
  'tracestate': (string);
}
