// Original file: libs/contracts/src/proto/telemetry.proto


export interface MetricValue {
  'number'?: (number | string);
  'flag'?: (boolean);
  'text'?: (string);
  'value'?: "number"|"flag"|"text";
}

export interface MetricValue__Output {
  'number'?: (number);
  'flag'?: (boolean);
  'text'?: (string);
  'value'?: "number"|"flag"|"text";
}
