import { HealthRegistry } from '@dmp/observability';
import {
  Inject,
  Injectable,
  Logger,
  Module,
  type DynamicModule,
  type OnApplicationShutdown,
  type OnModuleInit,
} from '@nestjs/common';
import { Redis } from 'ioredis';

export interface RedisModuleOptions {
  /** `redis://` or `rediss://` URL (the app's `redisSection` from @dmp/config). */
  url: string;
  /**
   * Whether the app needs Redis to do its job (default): /health is down while Redis is. An app that
   * only saves work with it (dmp-data's aggregation lease) reports the connection and stays up.
   */
  required?: boolean;
}

/**
 * The app's Redis connection for commands (`@Inject(REDIS_CLIENT)`), used only by repositories (each
 * store of one concept); pub/sub needs a connection of its own (ChannelSubscription).
 */
export const REDIS_CLIENT = Symbol('REDIS_CLIENT');

const OPTIONS = Symbol('REDIS_MODULE_OPTIONS');

/**
 * Connects on module init, not in the constructor (`lazyConnect`), and closes last, after every feature
 * drained. A Redis that is not there is not fatal: ioredis keeps reconnecting, /health says so, and the
 * features fall back (cached entries, deduplication left to ClickHouse's keys) or fail retryably (the
 * message waits).
 */
@Injectable()
class RedisLifecycle implements OnModuleInit, OnApplicationShutdown {
  private readonly log = new Logger('Redis');
  private lastError?: string;

  constructor(
    @Inject(REDIS_CLIENT) private readonly redis: Redis,
    @Inject(OPTIONS) private readonly options: RedisModuleOptions,
    health: HealthRegistry,
  ) {
    const required = options.required ?? true;
    health.register('redis', () => ({
      up: !required || redis.status === 'ready',
      detail: { connection: redis.status, url: redactUrl(options.url), ...(required ? {} : { required }) },
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
      this.log.log(`connected to ${redactUrl(this.options.url)}`);
    } catch (error) {
      // ioredis retries on its own; the first failure is logged by the 'error' listener.
      this.log.warn(`Redis not reachable at start-up, retrying: ${(error as Error).message}`);
    }
  }

  async onApplicationShutdown(): Promise<void> {
    await this.redis.quit().catch(() => this.redis.disconnect());
  }
}

/** The Redis (ioredis) connection of an app and its health check. Imported once, by the app module. */
@Module({})
export class RedisModule {
  static forRoot(options: RedisModuleOptions): DynamicModule {
    return {
      module: RedisModule,
      global: true,
      providers: [
        { provide: OPTIONS, useValue: options },
        {
          provide: REDIS_CLIENT,
          useFactory: () =>
            new Redis(options.url, {
              lazyConnect: true,
              // Commands issued in the same tick go out as one pipeline (a batch's lookups, a message's writes).
              enableAutoPipelining: true,
              // Fail a command after a few reconnect attempts rather than hold it forever: callers retry
              // (or fall back) with their own policy.
              maxRetriesPerRequest: 2,
              connectTimeout: 5_000,
              retryStrategy: (attempt) => Math.min(2_000, 100 * attempt),
            }),
        },
        RedisLifecycle,
      ],
      exports: [REDIS_CLIENT],
    };
  }
}

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
