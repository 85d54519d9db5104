import { applyRetention, ClickHouseRepository, Tables } from '@dmp/clickhouse';
import { errorMessage } from '@dmp/contracts';
import {
  Inject,
  Injectable,
  Logger,
  type OnApplicationBootstrap,
  type OnModuleDestroy,
} from '@nestjs/common';
import { DATA_CONFIG, type DataConfig } from '../config';

const EVERY_MS = 6 * 3_600_000;

/** Applies DATA_RETENTION_DAYS to telemetry_raw at start-up and every 6 hours (no-op when 0). */
@Injectable()
export class RetentionService implements OnApplicationBootstrap, OnModuleDestroy {
  private readonly logger = new Logger(RetentionService.name);
  private timer?: NodeJS.Timeout;

  constructor(
    private readonly clickhouse: ClickHouseRepository,
    @Inject(DATA_CONFIG) private readonly config: DataConfig,
  ) {}

  onApplicationBootstrap(): void {
    if (this.config.data.retentionDays <= 0) return;
    void this.apply();
    this.timer = setInterval(() => void this.apply(), EVERY_MS);
    this.timer.unref();
  }

  onModuleDestroy(): void {
    clearInterval(this.timer);
  }

  private async apply(): Promise<void> {
    const days = this.config.data.retentionDays;
    try {
      const result = await applyRetention(this.clickhouse, { table: Tables.raw, days });
      if (result.method === 'ttl') this.logger.log(`${Tables.raw}: TTL ${days} days`);
      else if (result.droppedPartitions.length > 0)
        this.logger.log(
          `${Tables.raw}: dropped partitions older than ${days} days: ${result.droppedPartitions.join(', ')}`,
        );
    } catch (error) {
      this.logger.warn(`retention of ${Tables.raw} failed: ${errorMessage(error)}`);
    }
  }
}
