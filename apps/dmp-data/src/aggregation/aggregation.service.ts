import { ClickHouseRepository, Tables } from '@dmp/clickhouse';
import { MetricsRegistry } from '@dmp/observability';
import {
  Inject,
  Injectable,
  Logger,
  type BeforeApplicationShutdown,
  type OnApplicationBootstrap,
} from '@nestjs/common';
import type { Counter, Histogram } from 'prom-client';
import { DATA_CONFIG, type DataConfig } from '../config';
import { pendingMinutesSql, recomputeSql, type MinuteKey } from './minute-aggregation';

/** Pending minutes read per scan of the marks (a few MB), recomputed DATA_AGGREGATION_MAX_KEYS at a time. */
const SCAN_KEYS = 100_000;

/**
 * Recomputes `telemetry_1m` for the (device, minute)s marked dirty by the writer, once the minute
 * ended and the allowed lateness passed (DATA_AGGREGATION_LATENESS_MS). Late data marks a minute
 * dirty again and it is recomputed again. Marks live in ClickHouse, so a crash (even kill -9)
 * loses no recomputation: what was not marked done is found again on the next run.
 */
@Injectable()
export class MinuteAggregator implements OnApplicationBootstrap, BeforeApplicationShutdown {
  private readonly logger = new Logger(MinuteAggregator.name);
  private timer?: NodeJS.Timeout;
  private running?: Promise<void>;
  private stopped = false;
  private readonly recomputed: Counter;
  private readonly runSeconds: Histogram;
  private readonly failures: Counter;

  constructor(
    private readonly clickhouse: ClickHouseRepository,
    @Inject(DATA_CONFIG) private readonly config: DataConfig,
    metrics: MetricsRegistry,
  ) {
    this.recomputed = metrics.counter(
      'dmp_data_aggregation_minutes_total',
      '(device, minute)s recomputed into telemetry_1m',
    );
    this.runSeconds = metrics.histogram(
      'dmp_data_aggregation_run_seconds',
      'Duration of one recomputation statement',
    );
    this.failures = metrics.counter('dmp_data_aggregation_errors_total', 'Failed aggregation runs');
  }

  onApplicationBootstrap(): void {
    if (!this.config.data.aggregation.enabled) return;
    this.schedule(0);
  }

  async beforeApplicationShutdown(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.timer);
    await this.running;
  }

  /**
   * One pass: recomputes every eligible pending minute, one statement per DATA_AGGREGATION_MAX_KEYS.
   * The pending marks are read once for many statements (SCAN_KEYS), not once per statement: finding
   * them groups the whole marks table, and at 100,000 devices a minute has a hundred statements.
   * Returns how many.
   */
  async runOnce(): Promise<number> {
    const { latenessMs, maxKeys } = this.config.data.aggregation;
    let total = 0;
    for (;;) {
      const [clock] = await this.clickhouse.query<{ now: number }>('SELECT toUInt32(now()) AS now');
      const now = Number(clock.now);
      const limit = Math.max(maxKeys, SCAN_KEYS);
      const pending = (
        await this.clickhouse.query<MinuteKey>(pendingMinutesSql(now, Math.ceil(latenessMs / 1000), limit))
      ).map((k) => ({ device_id: k.device_id, minute: Number(k.minute) }));
      for (let start = 0; start < pending.length && !this.stopped; start += maxKeys) {
        const keys = pending.slice(start, start + maxKeys);
        const stop = this.runSeconds.startTimer();
        // The snapshot of telemetry_raw is taken after `now`: the rows are versioned by it, and marks
        // made since (a higher ver) keep their minutes pending for the next pass.
        await this.clickhouse.command(recomputeSql(keys, now * 1000));
        stop();
        await this.clickhouse.insertRows(
          Tables.dirtyMinutes,
          keys.map((k) => ({ ...k, pending: 0, ver: now * 2 })),
          { columns: ['device_id', 'minute', 'pending', 'ver'] },
        );
        this.recomputed.inc(keys.length);
        total += keys.length;
      }
      if (pending.length < limit || this.stopped) return total;
    }
  }

  private schedule(delayMs: number): void {
    if (this.stopped) return;
    this.timer = setTimeout(() => {
      this.running = this.runOnce()
        .then((count) => {
          if (count > 0) this.logger.debug(`recomputed ${count} device-minute(s)`);
        })
        .catch((error: unknown) => {
          this.failures.inc();
          this.logger.warn(
            `aggregation failed, retrying: ${error instanceof Error ? error.message : String(error)}`,
          );
        })
        .finally(() => this.schedule(this.config.data.aggregation.intervalMs));
    }, delayMs);
    this.timer.unref();
  }
}
