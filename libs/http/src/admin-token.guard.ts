import {
  Inject,
  Injectable,
  ServiceUnavailableException,
  UnauthorizedException,
  type CanActivate,
  type ExecutionContext,
  type InjectionToken,
  type Provider,
} from '@nestjs/common';
import { createHash, timingSafeEqual } from 'node:crypto';
import type { IncomingMessage } from 'node:http';

/** The admin API's token, as the app's validated config gives it (ADMIN_TOKEN; undefined when unset). */
export interface AdminApiAuth {
  readonly token: string | undefined;
}

/** Injection token of {@link AdminApiAuth}: each app provides it from its config. */
export const ADMIN_API_AUTH = Symbol('ADMIN_API_AUTH');

/** Provides {@link ADMIN_API_AUTH} from the app's config object (injected as `configToken`). */
export function adminApiAuthProvider<C>(
  configToken: InjectionToken,
  tokenOf: (config: C) => string | undefined,
): Provider {
  return {
    provide: ADMIN_API_AUTH,
    useFactory: (config: C): AdminApiAuth => ({ token: tokenOf(config) }),
    inject: [configToken],
  };
}

/** What the guard decides for one request. */
export type AdminAccess = 'allowed' | 'denied' | 'off';

/**
 * The decision, apart from Nest: `off` when no token is configured (the admin API refuses everything),
 * `allowed` only for `Authorization: Bearer <the token>`, compared in constant time; `denied` otherwise.
 * `expected` is the token's digest ({@link adminTokenDigest}).
 */
export function decideAdminAccess(
  expected: Buffer | undefined,
  authorization: string | undefined,
): AdminAccess {
  if (!expected) return 'off';
  const match = /^Bearer\s+(\S+)\s*$/i.exec(authorization ?? '');
  return match && timingSafeEqual(adminTokenDigest(match[1]), expected) ? 'allowed' : 'denied';
}

/** Equal-length buffers for timingSafeEqual whatever the token lengths. */
export const adminTokenDigest = (token: string): Buffer => createHash('sha256').update(token).digest();

/**
 * `Authorization: Bearer {ADMIN_TOKEN}` on the admin endpoints of every app (dmp-mqtt's devices,
 * dmp-kernel's rules and alarms). Secure by default: without a token the admin API is off and every
 * request is refused with 503 ("set ADMIN_TOKEN") — never let through. dmp-mqtt's config requires the
 * token, so its admin API is never off; dmp-kernel runs without one, its admin API off.
 */
@Injectable()
export class AdminTokenGuard implements CanActivate {
  private readonly expected?: Buffer;

  constructor(@Inject(ADMIN_API_AUTH) auth: AdminApiAuth) {
    this.expected = auth.token ? adminTokenDigest(auth.token) : undefined;
  }

  canActivate(context: ExecutionContext): boolean {
    const request = context.switchToHttp().getRequest<IncomingMessage>();
    switch (decideAdminAccess(this.expected, request.headers.authorization)) {
      case 'allowed':
        return true;
      case 'off':
        throw new ServiceUnavailableException('the admin API is off: set ADMIN_TOKEN');
      case 'denied':
        throw new UnauthorizedException('a valid admin bearer token is required');
    }
  }
}
