import { errorMessage } from '@dmp/contracts';
import { backoffDelay } from '@dmp/flow';
import {
  Inject,
  Injectable,
  Logger,
  Module,
  type DynamicModule,
  type OnApplicationShutdown,
  type OnModuleInit,
} from '@nestjs/common';
import { setTimeout as sleep } from 'node:timers/promises';
import { HealthRegistry, MetricsRegistry } from '@dmp/observability';
import { ClickHouseRepository, type ClickHouseConnectionOptions } from './clickhouse.repository';
import { applyMigrations, migrations as dmpMigrations, type Migration } from './migrations';

export interface ClickHouseModuleOptions {
  connection: ClickHouseConnectionOptions;
  /** Apply migrations in `onModuleInit`, i.e. before any consumer starts. */
  migrate?: boolean;
  migrations?: readonly Migration[];
  /** How long start-up waits for a server that is not reachable yet. */
  startupTimeoutMs?: number;
}

const OPTIONS = Symbol('CLICKHOUSE_MODULE_OPTIONS');

@Injectable()
class ClickHouseLifecycle implements OnModuleInit, OnApplicationShutdown {
  private readonly logger = new Logger('ClickHouse');

  constructor(
    @Inject(OPTIONS) private readonly options: ClickHouseModuleOptions,
    private readonly repository: ClickHouseRepository,
    private readonly health: HealthRegistry,
  ) {}

  async onModuleInit(): Promise<void> {
    this.health.register('clickhouse', () => this.repository.health());
    if (!this.options.migrate) return;
    const deadline = Date.now() + (this.options.startupTimeoutMs ?? 60_000);
    for (let attempt = 1; ; attempt++) {
      try {
        const report = await applyMigrations(
          this.repository,
          this.options.migrations ?? dmpMigrations,
          this.logger,
        );
        this.logger.log(
          `ClickHouse ${report.server}, database ${this.repository.database}: ` +
            `${report.applied.length} migration(s) applied, ${report.alreadyApplied} already there` +
            (report.waiting.length > 0 ? `, ${report.waiting.join(', ')} waiting for a newer server` : ''),
        );
        return;
      } catch (error) {
        if (Date.now() >= deadline) throw error;
        this.logger.warn(
          `ClickHouse migrations failed (attempt ${attempt}), retrying: ${errorMessage(error)}`,
        );
        await sleep(backoffDelay(attempt, { baseMs: 500, maxMs: 5_000 }));
      }
    }
  }

  /** After every feature drained (their hooks run before this one). */
  async onApplicationShutdown(): Promise<void> {
    await this.repository.close();
  }
}

/** The ClickHouse repository for an app, its health check, and (optionally) migrations at start-up. */
@Module({})
export class ClickHouseModule {
  static forRoot(options: ClickHouseModuleOptions): DynamicModule {
    return {
      module: ClickHouseModule,
      global: true,
      providers: [
        { provide: OPTIONS, useValue: options },
        {
          provide: ClickHouseRepository,
          inject: [MetricsRegistry],
          useFactory: (metrics: MetricsRegistry) => new ClickHouseRepository(options.connection, { metrics }),
        },
        ClickHouseLifecycle,
      ],
      exports: [ClickHouseRepository],
    };
  }
}
