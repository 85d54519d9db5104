import { DmpError, httpStatusOf } from '@dmp/contracts';
import { Catch, HttpException, Logger, type ArgumentsHost, type ExceptionFilter } from '@nestjs/common';
import { randomUUID } from 'node:crypto';
import type { ServerResponse } from 'node:http';

/** What the admin API answers for an error, and what it logs. */
export interface AdminErrorAnswer {
  status: number;
  body: object;
  /** Logged with the error id: the internals stay in the log, never in the answer. */
  errorId?: string;
}

/**
 * The mapping, apart from Nest:
 * - an HttpException (400, 401, 404, 409, 422, the guard's 503, …) as Nest shapes it;
 * - a DmpError whose code has an HTTP status in the registry (`ERROR_CODES` in @dmp/contracts: 404, 409…)
 *   with that status and `{statusCode, code, message}`;
 * - anything else with an error id that is also in the log: 503 when it is worth retrying (a retryable
 *   DmpError, Redis unreachable), else 500 — with its code if it has one, never its message.
 */
export function adminErrorAnswer(
  exception: unknown,
  newErrorId: () => string = randomUUID,
): AdminErrorAnswer {
  if (exception instanceof HttpException) {
    const body = exception.getResponse();
    return { status: exception.getStatus(), body: typeof body === 'string' ? { message: body } : body };
  }
  const status = exception instanceof DmpError ? httpStatusOf(exception.code) : undefined;
  if (exception instanceof DmpError && status !== undefined)
    return { status, body: { statusCode: status, code: exception.code, message: exception.message } };
  const errorId = newErrorId();
  const retryable =
    (exception as { retryable?: unknown } | null)?.retryable === true || isConnectionError(exception);
  return {
    status: retryable ? 503 : 500,
    body: {
      statusCode: retryable ? 503 : 500,
      error: retryable ? 'Service Unavailable' : 'Internal Server Error',
      ...(exception instanceof DmpError ? { code: exception.code } : {}),
      errorId,
    },
    errorId,
  };
}

/** The admin APIs' errors at the edge ({@link adminErrorAnswer}), for every app. */
@Catch()
export class AdminExceptionFilter implements ExceptionFilter {
  private readonly log = new Logger('AdminApi');

  catch(exception: unknown, host: ArgumentsHost): void {
    const answer = adminErrorAnswer(exception);
    if (answer.errorId)
      this.log.error(
        `admin request failed [${answer.errorId}]: ${(exception as Error | null)?.stack ?? String(exception)}`,
      );
    const response = host.switchToHttp().getResponse<ServerResponse>();
    response.statusCode = answer.status;
    response.setHeader('content-type', 'application/json; charset=utf-8');
    response.end(JSON.stringify(answer.body));
  }
}

/** ioredis errors while Redis is away (connection closed, retries exhausted). */
function isConnectionError(error: unknown): boolean {
  const name = (error as Error | undefined)?.name ?? '';
  const message = (error as Error | undefined)?.message ?? '';
  return name === 'MaxRetriesPerRequestError' || /Connection is closed|ECONNREFUSED|ETIMEDOUT/.test(message);
}
