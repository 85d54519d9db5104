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

/** Codes of the device admin API and of device authentication (docs/devices.md). */
export const DeviceErrorCode = {
  /** A device id that is, or could be, a service account's name or client id (409). */
  ReservedDeviceId: 'DMP_ERR_RESERVED_DEVICE_ID',
  /** Too many password checks running and queued: the login is denied at once (retryable). */
  AuthOverloaded: 'DMP_ERR_AUTH_OVERLOADED',
} as const;
export type DeviceErrorCode = (typeof DeviceErrorCode)[keyof typeof DeviceErrorCode];

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
