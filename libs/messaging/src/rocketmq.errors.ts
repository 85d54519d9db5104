import { DmpError, errorMessage, MessagingErrorCode } from '@dmp/contracts';
import {
  BadRequestException,
  PayloadTooLargeException,
  RequestHeaderFieldsTooLargeException,
  UnsupportedException,
} from 'rocketmq-client-nodejs';

/** Stable codes of @dmp/messaging errors, from the registry of codes (@dmp/contracts). */
export { MessagingErrorCode };

/**
 * Errors that no retry can fix: the client validates the message type against the topic
 * (TypeError), the proxy rejects bad requests and oversized bodies/properties.
 */
export function isPermanentSendError(error: unknown): boolean {
  return (
    error instanceof TypeError ||
    error instanceof BadRequestException ||
    error instanceof PayloadTooLargeException ||
    error instanceof RequestHeaderFieldsTooLargeException ||
    error instanceof UnsupportedException
  );
}

export function toSendError(topic: string, endpoints: string, error: unknown): DmpError {
  return isPermanentSendError(error)
    ? new DmpError(
        MessagingErrorCode.SendRejected,
        `RocketMQ rejected a message for ${topic}: ${errorMessage(error)}`,
        false,
        {
          cause: error,
        },
      )
    : new DmpError(
        MessagingErrorCode.SendFailed,
        `sending to ${topic} via ${endpoints} failed: ${errorMessage(error)}`,
        true,
        { cause: error },
      );
}

/** DmpError-like, also across copies of the class (duck-typed). */
export function asDmpError(
  error: unknown,
): { code: string; message: string; retryable: boolean } | undefined {
  if (error instanceof DmpError) return error;
  if (typeof error === 'object' && error !== null) {
    const { code, retryable, message } = error as Record<string, unknown>;
    if (typeof code === 'string' && typeof retryable === 'boolean')
      return { code, retryable, message: typeof message === 'string' ? message : code };
  }
  return undefined;
}
