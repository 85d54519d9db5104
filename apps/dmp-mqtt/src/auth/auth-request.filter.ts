import { BadRequestException, Catch, type ArgumentsHost } from '@nestjs/common';
import { BaseExceptionFilter, HttpAdapterHost } from '@nestjs/core';
import { BaseRpcExceptionFilter } from '@nestjs/microservices';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { MqttAuthService } from './mqtt-auth.service';

/**
 * A request to /auth/mqtt/* whose body is not even JSON fails in the body parser, before the controller
 * runs, as a 400 — which EMQX would read as "ignore". Answered "deny" (200) instead, like every other
 * failure on these endpoints. Anything else keeps Nest's default handling (HTTP and the MQTT transport).
 */
@Catch(BadRequestException)
export class AuthRequestErrorFilter extends BaseExceptionFilter {
  private readonly rpc = new BaseRpcExceptionFilter();

  constructor(
    adapterHost: HttpAdapterHost,
    private readonly auth: MqttAuthService,
  ) {
    super(adapterHost.httpAdapter);
  }

  override catch(exception: BadRequestException, host: ArgumentsHost): unknown {
    if (host.getType() !== 'http') return this.rpc.catch(exception, host);
    const http = host.switchToHttp();
    const request = http.getRequest<IncomingMessage>();
    const path = request.url ?? '';
    if (!path.startsWith('/auth/mqtt/')) return super.catch(exception, host);
    const response = http.getResponse<ServerResponse>();
    const authn = path.startsWith('/auth/mqtt/authn');
    this.auth.countUnreadable(authn ? 'authn' : 'authz');
    const body = authn ? { result: 'deny', is_superuser: false } : { result: 'deny' };
    response.statusCode = 200;
    response.setHeader('content-type', 'application/json; charset=utf-8');
    response.setHeader('cache-control', 'no-store');
    response.end(JSON.stringify(body));
    return undefined;
  }
}
