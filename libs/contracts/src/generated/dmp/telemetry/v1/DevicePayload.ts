// Original file: libs/contracts/src/proto/telemetry.proto

import type { MetricValue as _dmp_telemetry_v1_MetricValue, MetricValue__Output as _dmp_telemetry_v1_MetricValue__Output } from '../../../dmp/telemetry/v1/MetricValue';
import type { Long } from '@grpc/proto-loader';

export interface DevicePayload {
  'deviceId'?: (string);
  'messageId'?: (string);
  /**
   * milliseconds since the Unix epoch
   */
  'ts'?: (number | string | Long);
  'seq'?: (number | string | Long);
  'metrics'?: ({[key: string]: _dmp_telemetry_v1_MetricValue});
  /**
   * optional W3C trace context for MQTT 3.1.1 devices
   */
  'traceparent'?: (string);
}

export interface DevicePayload__Output {
  'deviceId': (string);
  'messageId': (string);
  /**
   * milliseconds since the Unix epoch
   */
  'ts': (number);
  'seq': (number);
  'metrics': ({[key: string]: _dmp_telemetry_v1_MetricValue__Output});
  /**
   * optional W3C trace context for MQTT 3.1.1 devices
   */
  'traceparent': (string);
}
