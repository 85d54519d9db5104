import type { Deadline } from '@grpc/grpc-js';

/** What callSignal needs of a grpc-js server call. */
export interface CancellableCall {
  readonly cancelled: boolean;
  getDeadline(): Deadline;
  once(event: 'cancelled', listener: () => void): unknown;
  off(event: 'cancelled', listener: () => void): unknown;
}

/** Why a call's signal aborted. */
export type CallEnd = 'cancelled' | 'deadline';

/**
 * An AbortSignal for a gRPC server call: aborts when the client cancels the call or goes away
 * (reason 'cancelled'), or when the call's deadline passes ('deadline') — grpc-js answers
 * DEADLINE_EXCEEDED itself then, but the handler would go on working for a caller that already gave up
 * (and retries). A grpc-js client resets the stream at its deadline, a moment before the server's own
 * deadline: that call usually ends 'cancelled'. `done()` releases the timer and listener once the call
 * answered.
 */
export function callSignal(call: CancellableCall): {
  signal: AbortSignal;
  done: () => void;
} {
  const controller = new AbortController();
  const abort = (reason: CallEnd) => controller.abort(reason);
  const raw = call.getDeadline();
  const deadline = raw instanceof Date ? raw.getTime() : raw;
  const onCancelled = () => abort('cancelled');
  let timer: NodeJS.Timeout | undefined;
  if (call.cancelled) abort('cancelled');
  else if (Number.isFinite(deadline) && deadline <= Date.now()) abort('deadline');
  else {
    call.once('cancelled', onCancelled);
    // setTimeout's limit is 2^31-1 ms (about 24.8 days); a later deadline is as good as none.
    if (Number.isFinite(deadline) && deadline - Date.now() < 2 ** 31 - 1)
      timer = setTimeout(() => abort('deadline'), Math.max(0, deadline - Date.now()));
  }
  return {
    signal: controller.signal,
    done: () => {
      clearTimeout(timer);
      call.off('cancelled', onCancelled);
    },
  };
}
