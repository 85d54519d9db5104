/**
 * Stable error codes, mapped to ack / retry / dead-letter only at the edges.
 * Rejection codes are also the `reason` label of the rejection metrics.
 */
export const RejectCode = {
  MalformedPayload: 'DMP_ERR_MALFORMED_PAYLOAD',
  InvalidPayload: 'DMP_ERR_INVALID_PAYLOAD',
  PayloadTooLarge: 'DMP_ERR_PAYLOAD_TOO_LARGE',
  WrongTopic: 'DMP_ERR_WRONG_TOPIC',
  UnknownDevice: 'DMP_ERR_UNKNOWN_DEVICE',
  SpoofedDevice: 'DMP_ERR_SPOOFED_DEVICE',
  Duplicate: 'DMP_ERR_DUPLICATE',
  RateLimited: 'DMP_ERR_RATE_LIMITED',
  Heartbeat: 'DMP_FILTERED_HEARTBEAT',
} as const;
export type RejectCode = (typeof RejectCode)[keyof typeof RejectCode];

export class DmpError extends Error {
  constructor(
    readonly code: string,
    message: string,
    readonly retryable = false,
    options?: ErrorOptions,
  ) {
    super(message, options);
    this.name = 'DmpError';
  }
}

/** An error's message, or the thrown value as text (anything may be thrown). */
export const errorMessage = (error: unknown): string =>
  error instanceof Error ? error.message : String(error);
