// Original file: libs/contracts/src/proto/telemetry.proto


export interface IngestOutcome {
  'messageId'?: (string);
  'accepted'?: (boolean);
  /**
   * stable DMP_ERR_* code when not accepted
   */
  'errorCode'?: (string);
  'errorMessage'?: (string);
  'retryable'?: (boolean);
}

export interface IngestOutcome__Output {
  'messageId': (string);
  'accepted': (boolean);
  /**
   * stable DMP_ERR_* code when not accepted
   */
  'errorCode': (string);
  'errorMessage': (string);
  'retryable': (boolean);
}
