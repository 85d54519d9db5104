import { Catch, type ArgumentsHost, type RpcExceptionFilter } from '@nestjs/common';
import { throwError, type Observable } from 'rxjs';

/**
 * Hands a RocketMQ handler's error, untouched, to the consumer server, which settles the message
 * by it (DmpError retryable → redeliver, not retryable → dead-letter). Without it Nest's default
 * RPC filter replaces every error by a generic one, and all failures count as retryable.
 * Use on consumer controllers: `@UseFilters(RocketMqExceptionFilter)`.
 */
@Catch()
export class RocketMqExceptionFilter implements RpcExceptionFilter<unknown> {
  catch(exception: unknown, _host: ArgumentsHost): Observable<never> {
    return throwError(() => exception);
  }
}
