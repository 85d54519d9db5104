import type { ServerUnaryCall } from '@grpc/grpc-js';

/** Why a call's signal aborted. */
export type CallEnd = 'cancelled' | 'deadline';

/**
 * An AbortSignal for a gRPC server call: aborts (reason 'cancelled' or 'deadline') when the client
 * cancels the call or goes away, or when the call's deadline passes — grpc-js answers
 * DEADLINE_EXCEEDED itself then, but does not tell the handler, which would go on working for a caller
 * that already gave up (and retries). `done()` releases the timer and listener once the call answered.
 */
export function callSignal(
  call: Pick<ServerUnaryCall<unknown, unknown>, 'cancelled' | 'getDeadline' | 'once' | 'off'>,
): {
  signal: AbortSignal;
  done: () => void;
} {
  const controller = new AbortController();
  const abort = (reason: CallEnd) => controller.abort(reason);
  const onCancelled = () => abort('cancelled');
  const raw = call.getDeadline();
  const deadline = raw instanceof Date ? raw.getTime() : raw;
  let timer: NodeJS.Timeout | undefined;
  if (call.cancelled) abort('cancelled');
  else if (Number.isFinite(deadline) && deadline <= Date.now()) abort('deadline');
  else {
    call.once('cancelled', onCancelled);
    // setTimeout's limit is 2^31-1 ms (about 24.8 days); a later deadline is as good as none.
    if (Number.isFinite(deadline) && deadline - Date.now() < 2 ** 31 - 1)
      timer = setTimeout(() => abort('deadline'), deadline - Date.now());
  }
  return {
    signal: controller.signal,
    done: () => {
      clearTimeout(timer);
      call.off('cancelled', onCancelled);
    },
  };
}
