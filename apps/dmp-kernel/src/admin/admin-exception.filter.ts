import { DmpError } from '@dmp/contracts';
import { formatRuleError } from '@dmp/rules';
import { Catch, HttpException, Logger, type ArgumentsHost, type ExceptionFilter } from '@nestjs/common';
import { randomUUID } from 'node:crypto';
import type { ServerResponse } from 'node:http';
import { AlarmErrorCode } from '../alarms/alarm.service';
import { RuleSetRejectedError } from '../rules/rule-set.holder';

const STATUS_OF_CODE: Record<string, number> = {
  [AlarmErrorCode.NotFound]: 404,
  [AlarmErrorCode.NotAcknowledgeable]: 409,
  [AlarmErrorCode.Conflict]: 409,
};

/**
 * Admin API errors at the edge: a refused rule set is 422 with every error (file, line, column, message);
 * DmpErrors map by code (404, 409; retryable ones 503); HTTP errors as Nest shapes them; anything else is
 * 500 with an error id that is also in the log — never internals.
 */
@Catch()
export class AdminExceptionFilter implements ExceptionFilter {
  private readonly log = new Logger('AdminApi');

  catch(exception: unknown, host: ArgumentsHost): void {
    const response = host.switchToHttp().getResponse<ServerResponse>();
    if (exception instanceof RuleSetRejectedError) {
      return send(response, 422, {
        statusCode: 422,
        error: 'Unprocessable Entity',
        code: exception.code,
        message: 'rule set refused; the running rule set is unchanged',
        errors: exception.errors,
        text: exception.errors.map(formatRuleError),
      });
    }
    if (exception instanceof HttpException) {
      const body = exception.getResponse();
      return send(response, exception.getStatus(), typeof body === 'string' ? { message: body } : body);
    }
    if (exception instanceof DmpError) {
      const status = STATUS_OF_CODE[exception.code] ?? (exception.retryable ? 503 : 400);
      return send(response, status, { statusCode: status, code: exception.code, message: exception.message });
    }
    const errorId = randomUUID();
    this.log.error(`admin request failed [${errorId}]: ${(exception as Error)?.stack ?? String(exception)}`);
    send(response, 500, { statusCode: 500, error: 'Internal Server Error', errorId });
  }
}

function send(response: ServerResponse, status: number, body: unknown): void {
  response.statusCode = status;
  response.setHeader('content-type', 'application/json; charset=utf-8');
  response.end(JSON.stringify(body));
}
