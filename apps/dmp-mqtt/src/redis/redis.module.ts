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
import { MQTT_APP_CONFIG, type MqttAppConfig } from '../config';

/** The app's Redis connection (commands; pub/sub uses its own, see DeviceRegistry). */
export const REDIS_CLIENT = Symbol('REDIS_CLIENT');

/**
 * Connects on module init, not in the constructor (`lazyConnect`), and closes last. A Redis that is not
 * there is not fatal: ioredis keeps reconnecting, /health says so, and the features fall back (cached
 * registry entries, deduplication left to ClickHouse's keys) or let messages wait.
 */
@Injectable()
class RedisLifecycle implements OnModuleInit, OnApplicationShutdown {
  private readonly log = new Logger('Redis');
  private lastError?: string;

  constructor(
    @Inject(REDIS_CLIENT) private readonly redis: Redis,
    @Inject(MQTT_APP_CONFIG) private readonly config: MqttAppConfig,
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
      // ioredis retries on its own; the first failure is logged by the 'error' listener.
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
      inject: [MQTT_APP_CONFIG],
      useFactory: (config: MqttAppConfig) =>
        new Redis(config.redis.url, {
          lazyConnect: true,
          // Commands issued in the same tick go out as one pipeline.
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
