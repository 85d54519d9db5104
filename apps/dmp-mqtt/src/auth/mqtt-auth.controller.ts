import { Body, Controller, Header, Headers, HttpCode, Post } from '@nestjs/common';
import { MqttAuthService, type AuthnAnswer, type AuthzAnswer } from './mqtt-auth.service';

/** Header carrying MQTT_AUTH_HTTP_SECRET on EMQX's calls, when that is configured. */
export const AUTH_SECRET_HEADER = 'x-dmp-auth-secret';

/**
 * EMQX 5's HTTP authenticator and authorizer call these (docker/emqx/emqx.conf): POST, JSON body built
 * from `${clientid}`, `${username}`, `${password}`, `${peerhost}` (authn) or `${clientid}`,
 * `${username}`, `${topic}`, `${action}` (authz). Always 200 with a JSON `result` — never 201 (Nest's
 * default for POST) or an error status, which EMQX would read as "ignore". Not behind the admin token:
 * EMQX has none; MQTT_AUTH_HTTP_SECRET can protect them instead.
 */
@Controller('auth/mqtt')
export class MqttAuthController {
  constructor(private readonly auth: MqttAuthService) {}

  @Post('authn')
  @HttpCode(200)
  @Header('cache-control', 'no-store')
  authn(
    @Body() body: unknown,
    @Headers(AUTH_SECRET_HEADER) secret?: string | string[],
  ): Promise<AuthnAnswer> {
    return this.auth.authenticate(body, single(secret));
  }

  @Post('authz')
  @HttpCode(200)
  @Header('cache-control', 'no-store')
  authz(
    @Body() body: unknown,
    @Headers(AUTH_SECRET_HEADER) secret?: string | string[],
  ): Promise<AuthzAnswer> {
    return this.auth.authorize(body, single(secret));
  }
}

const single = (value: string | string[] | undefined) => (Array.isArray(value) ? value[0] : value);
