import { HealthRegistry } from '@dmp/observability';
import {
  Global,
  Inject,
  Injectable,
  Logger,
  Module,
  type OnApplicationShutdown,
  type OnModuleInit,
} from '@nestjs/common';
import { Redis } from 'ioredis';
import { KERNEL_CONFIG, type KernelConfig } from '../config';

/** The kernel's Redis connection for commands (pub/sub has its own, see DeviceMetadataCache). */
export const REDIS_CLIENT = Symbol('KERNEL_REDIS_CLIENT');

/**
 * Connects on module init (not in the constructor) and closes last, after every feature drained.
 * Redis away is not fatal: ioredis reconnects, /health says so, callers fail retryably (the message
 * waits) or fall back to cached metadata.
 */
@Injectable()
class RedisLifecycle implements OnModuleInit, OnApplicationShutdown {
  private readonly log = new Logger('Redis');
  private lastError?: string;

  constructor(
    @Inject(REDIS_CLIENT) private readonly redis: Redis,
    @Inject(KERNEL_CONFIG) private readonly config: KernelConfig,
    health: HealthRegistry,
  ) {
    health.register('redis', () => ({
      up: redis.status === 'ready',
      detail: { connection: redis.status, url: redactUrl(config.redis.url) },
    }));
    redis.on('error', (error: Error) => {
      if (error.message === this.lastError) return;
      this.lastError = error.message;
      this.log.error(`Redis: ${error.message}`);
    });
    redis.on('ready', () => {
      if (this.lastError) this.log.log('Redis reachable again');
      this.lastError = undefined;
    });
  }

  async onModuleInit(): Promise<void> {
    try {
      await this.redis.connect();
      this.log.log(`connected to ${redactUrl(this.config.redis.url)}`);
    } catch (error) {
      this.log.warn(`Redis not reachable at start-up, retrying: ${(error as Error).message}`);
    }
  }

  async onApplicationShutdown(): Promise<void> {
    await this.redis.quit().catch(() => this.redis.disconnect());
  }
}

@Global()
@Module({
  providers: [
    {
      provide: REDIS_CLIENT,
      inject: [KERNEL_CONFIG],
      useFactory: (config: KernelConfig) =>
        new Redis(config.redis.url, {
          lazyConnect: true,
          // Commands issued in the same tick go out as one pipeline (a batch's lookups, a message's writes).
          enableAutoPipelining: true,
          maxRetriesPerRequest: 2,
          connectTimeout: 5_000,
          retryStrategy: (attempt) => Math.min(2_000, 100 * attempt),
        }),
    },
    RedisLifecycle,
  ],
  exports: [REDIS_CLIENT],
})
export class RedisModule {}

/** The URL without its password, for logs and /health. */
export function redactUrl(url: string): string {
  try {
    const parsed = new URL(url);
    if (parsed.password) parsed.password = '***';
    return parsed.toString();
  } catch {
    return '(invalid URL)';
  }
}
