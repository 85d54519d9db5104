import {
  Inject,
  Injectable,
  UnauthorizedException,
  type CanActivate,
  type ExecutionContext,
} from '@nestjs/common';
import { createHash, timingSafeEqual } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import { MQTT_APP_CONFIG, type MqttAppConfig } from '../config';

/** `Authorization: Bearer {ADMIN_TOKEN}` on the admin endpoints; compared in constant time. */
@Injectable()
export class AdminTokenGuard implements CanActivate {
  private readonly expected: Buffer;

  constructor(@Inject(MQTT_APP_CONFIG) config: MqttAppConfig) {
    this.expected = digest(config.edge.adminToken);
  }

  canActivate(context: ExecutionContext): boolean {
    const request = context.switchToHttp().getRequest<IncomingMessage>();
    const match = /^Bearer\s+(\S+)\s*$/i.exec(request.headers.authorization ?? '');
    if (!match || !timingSafeEqual(digest(match[1]), this.expected)) {
      throw new UnauthorizedException('a valid admin bearer token is required');
    }
    return true;
  }
}

/** Equal-length buffers for timingSafeEqual whatever the token lengths. */
const digest = (token: string) => createHash('sha256').update(token).digest();
