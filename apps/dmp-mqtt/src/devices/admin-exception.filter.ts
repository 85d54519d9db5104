import { Catch, HttpException, Logger, type ArgumentsHost, type ExceptionFilter } from '@nestjs/common';
import { randomUUID } from 'node:crypto';
import type { ServerResponse } from 'node:http';

/**
 * Admin API errors: HTTP errors as Nest shapes them; anything else (Redis unreachable…) as 503 or 500
 * with an error id that is also in the log — never the internals.
 */
@Catch()
export class AdminExceptionFilter implements ExceptionFilter {
  private readonly log = new Logger('AdminApi');

  catch(exception: unknown, host: ArgumentsHost): void {
    const response = host.switchToHttp().getResponse<ServerResponse>();
    if (exception instanceof HttpException) {
      const body = exception.getResponse();
      send(response, exception.getStatus(), typeof body === 'string' ? { message: body } : body);
      return;
    }
    const errorId = randomUUID();
    const retryable =
      (exception as { retryable?: unknown } | null)?.retryable === true || isConnectionError(exception);
    this.log.error(`admin request failed [${errorId}]: ${(exception as Error)?.stack ?? String(exception)}`);
    send(response, retryable ? 503 : 500, {
      statusCode: retryable ? 503 : 500,
      error: retryable ? 'Service Unavailable' : 'Internal Server Error',
      errorId,
    });
  }
}

function send(response: ServerResponse, status: number, body: unknown): void {
  response.statusCode = status;
  response.setHeader('content-type', 'application/json; charset=utf-8');
  response.end(JSON.stringify(body));
}

/** ioredis errors while Redis is away (connection closed, retries exhausted). */
function isConnectionError(error: unknown): boolean {
  const name = (error as Error | undefined)?.name ?? '';
  const message = (error as Error | undefined)?.message ?? '';
  return name === 'MaxRetriesPerRequestError' || /Connection is closed|ECONNREFUSED|ETIMEDOUT/.test(message);
}
