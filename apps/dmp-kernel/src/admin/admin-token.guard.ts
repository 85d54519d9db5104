import {
  Inject,
  Injectable,
  ServiceUnavailableException,
  UnauthorizedException,
  type CanActivate,
  type ExecutionContext,
} from '@nestjs/common';
import { createHash, timingSafeEqual } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import { KERNEL_CONFIG, type KernelConfig } from '../config';

/**
 * `Authorization: Bearer {ADMIN_TOKEN}` on the admin endpoints (the same variable dmp-mqtt uses),
 * compared in constant time. Without ADMIN_TOKEN configured the admin API is off (503).
 */
@Injectable()
export class AdminTokenGuard implements CanActivate {
  private readonly expected?: Buffer;

  constructor(@Inject(KERNEL_CONFIG) config: KernelConfig) {
    this.expected = config.kernel.adminToken ? digest(config.kernel.adminToken) : undefined;
  }

  canActivate(context: ExecutionContext): boolean {
    if (!this.expected) throw new ServiceUnavailableException('the admin API is off: set ADMIN_TOKEN');
    const request = context.switchToHttp().getRequest<IncomingMessage>();
    const match = /^Bearer\s+(\S+)\s*$/i.exec(request.headers.authorization ?? '');
    if (!match || !timingSafeEqual(digest(match[1]), this.expected))
      throw new UnauthorizedException('a valid admin bearer token is required');
    return true;
  }
}

/** Equal-length buffers for timingSafeEqual whatever the token lengths. */
const digest = (token: string) => createHash('sha256').update(token).digest();
