import { ClickHouseRepository, dropPartitionsBefore, Tables } from '@dmp/clickhouse';
import { errorMessage } from '@dmp/contracts';
import { MetricsRegistry } from '@dmp/observability';
import {
  Inject,
  Injectable,
  Logger,
  Optional,
  type BeforeApplicationShutdown,
  type OnApplicationBootstrap,
} from '@nestjs/common';
import { LRUCache } from 'lru-cache';
import type { Counter, Gauge, Histogram } from 'prom-client';
import { DATA_CONFIG, type DataConfig } from '../config';
import { advanceCursor, cursorAt, planPass } from './aggregation-cursor';
import { AggregationLease } from './aggregation-lease';
import {
  dueMinutes,
  markedMinutesSql,
  minuteKeyOf,
  marksPerSecondSql,
  pageEnds,
  RECOMPUTE_SOURCES,
  recomputeBatches,
  recomputeSql,
  SOURCE_DAYS,
  type MarkedMinute,
} from './minute-aggregation';

/** Marks read per page of the log (a few MB), recomputed DATA_AGGREGATION_MAX_KEYS at a time. */
const MARKS_PER_PAGE = 100_000;
/** Days of the mark log kept behind the cursor (for inspection), then dropped by the day. */
const KEEP_DAYS_BEHIND = 1;
const PRUNE_INTERVAL_MS = 3_600_000;
/** (device, minute)s remembered with the snapshot they were recomputed from (see `recomputedAt`). */
const RECOMPUTED_MAX = 200_000;

/**
 * Recomputes `telemetry_1m` for the (device, minute)s in the mark log (`telemetry_1m_marks`, written
 * by the writer before it acks), once the minute ended and the allowed lateness passed
 * (DATA_AGGREGATION_LATENESS_MS). On-time data marks its whole minute (every device of it is
 * recomputed in one statement); late data marks its (device, minute), which is recomputed again.
 * The log is read forward from a cursor kept in ClickHouse (`telemetry_1m_progress`), advanced only
 * after the minutes before it were recomputed, so a crash (even kill -9) loses no recomputation: the
 * next run reads the same marks again. Each pass reads only the marks made since the last one, and
 * the days behind the cursor are dropped. Minutes of the last SOURCE_DAYS are recomputed from
 * `telemetry_1m_source` (ordered by minute), older ones from `telemetry_raw`.
 */
@Injectable()
export class MinuteAggregator implements OnApplicationBootstrap, BeforeApplicationShutdown {
  private readonly logger = new Logger(MinuteAggregator.name);
  private timer?: NodeJS.Timeout;
  private running?: Promise<void>;
  private stopped = false;
  private lastPruneAt = 0;
  /**
   * A minute not due yet (the last ones, until the lateness passed; or a device clock running ahead)
   * holds the cursor at its first mark, so the marks after it are read again on the next pass. Those
   * recomputed from a snapshot that had their rows (marked before the snapshot's second) are skipped.
   * Lost on restart, or evicted: then recomputed once more.
   */
  private readonly recomputedAt = new LRUCache<string, number>({ max: RECOMPUTED_MAX });
  private readonly recomputed: Counter;
  private readonly runSeconds: Histogram<'source'>;
  private readonly failures: Counter;
  private readonly passes: Counter;
  private readonly holder: Gauge;

  /** Without a lease (a test's own aggregator), every scheduled pass runs. */
  constructor(
    private readonly clickhouse: ClickHouseRepository,
    @Inject(DATA_CONFIG) private readonly config: DataConfig,
    metrics: MetricsRegistry,
    @Optional() private readonly lease?: AggregationLease,
  ) {
    this.recomputed = metrics.counter(
      'dmp_data_aggregation_minutes_total',
      '(device, minute)s recomputed into telemetry_1m',
    );
    this.runSeconds = metrics.histogram(
      'dmp_data_aggregation_run_seconds',
      'Duration of one recomputation statement, by the table it read (recent: telemetry_1m_source)',
      ['source'],
    );
    // Exported from the start, so a panel's rate over it is 0, not absent, until the first statement.
    for (const source of RECOMPUTE_SOURCES) this.runSeconds.zero({ source });
    this.failures = metrics.counter('dmp_data_aggregation_errors_total', 'Failed aggregation runs');
    this.passes = metrics.counter(
      'dmp_data_aggregation_passes_total',
      'Passes over the mark log this instance ran (only the holder of the aggregation lease runs them)',
    );
    this.holder = metrics.gauge(
      'dmp_data_aggregation_lease_held',
      '1 while this instance holds the aggregation lease (or Redis cannot tell: then it aggregates too)',
    );
  }

  onApplicationBootstrap(): void {
    this.schedule(0);
  }

  async beforeApplicationShutdown(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.timer);
    await this.running;
    await this.lease?.release();
  }

  /**
   * One pass over the marks made since the cursor, page by page: recomputes the due minutes, one
   * statement per DATA_AGGREGATION_MAX_KEYS, then moves the cursor past the page — but never past the
   * first mark of a minute not due yet. Returns how many minutes were recomputed.
   */
  async runOnce(): Promise<number> {
    const { latenessMs, maxKeys } = this.config.data.aggregation;
    const [clock] = await this.clickhouse.query<{ now: number }>('SELECT toUInt32(now()) AS now');
    const now = Number(clock.now);
    const stored = await this.cursor();
    const plan = planPass({
      now,
      cursor: stored,
      latenessMs,
      requestTimeoutMs: this.clickhouse.requestTimeoutMs,
    });
    if (plan.kind === 'idle') return 0;
    const fresh = { maxReplicaDelaySeconds: plan.maxReplicaDelaySeconds };
    const seconds = (
      await this.clickhouse.query<{ second: number; marks: number }>(
        marksPerSecondSql(stored, plan.until),
        fresh,
      )
    ).map((s) => ({ second: Number(s.second), marks: Number(s.marks) }));
    let total = 0;
    let state = cursorAt(stored);
    let from = stored;
    for (const end of pageEnds(seconds, plan.until, MARKS_PER_PAGE)) {
      if (this.stopped) return total;
      const marked = (await this.clickhouse.query<MarkedMinute>(markedMinutesSql(from, end), fresh)).map(
        (m): MarkedMinute => ({
          device_id: m.device_id,
          minute: Number(m.minute),
          first_marked: Number(m.first_marked),
          last_marked: Number(m.last_marked),
        }),
      );
      const page = dueMinutes(marked, plan.watermark, (key) => this.recomputedAt.get(minuteKeyOf(key)));
      for (const batch of recomputeBatches(page.due, maxKeys, plan.recentFrom)) {
        const stop = this.runSeconds.startTimer({ source: batch.source });
        // The snapshot of the source is taken after `now`: the rows are versioned by it.
        await this.clickhouse.command(recomputeSql(batch, now * 1000), fresh);
        stop();
        for (const key of batch.keys) this.recomputedAt.set(minuteKeyOf(key), now);
        this.recomputed.inc(batch.keys.length);
        total += batch.keys.length;
      }
      from = end;
      const next = advanceCursor(state, { end, heldFrom: page.heldFrom, marks: marked.length });
      if (next.store)
        await this.clickhouse.insertRows(Tables.minuteProgress, [{ id: 0, marks_until: next.state.cursor }]);
      state = next.state;
    }
    await this.prune(state.cursor);
    return total;
  }

  private async cursor(): Promise<number> {
    const [row] = await this.clickhouse.query<{ until: number }>(
      `SELECT toUInt32(max(marks_until)) AS until FROM ${Tables.minuteProgress}`,
    );
    return Number(row?.until ?? 0);
  }

  /** Drops the days of the log that ended more than KEEP_DAYS_BEHIND before the cursor, and old source days. */
  private async prune(cursor: number): Promise<void> {
    if (Date.now() - this.lastPruneAt < PRUNE_INTERVAL_MS) return;
    this.lastPruneAt = Date.now();
    await dropPartitionsBefore(
      this.clickhouse,
      Tables.minuteMarks,
      `toDateTime(${cursor - KEEP_DAYS_BEHIND * 86_400})`,
    );
    await this.dropOldSourceDays();
  }

  /** Drops the days of telemetry_1m_source that ended a day before the SOURCE_DAYS it is read for. */
  private async dropOldSourceDays(): Promise<void> {
    await dropPartitionsBefore(this.clickhouse, Tables.minuteSource, `now() - ${(SOURCE_DAYS + 1) * 86_400}`);
  }

  /**
   * A pass, if this instance holds the lease (or Redis cannot tell: aggregating twice is harmless). The
   * lease is extended while the pass runs: one slowed down by ClickHouse (a replica away, a request
   * timing out) keeps it, rather than another instance starting the same work beside it.
   */
  private async leasedPass(): Promise<number> {
    const lease = this.lease;
    const state = lease ? await lease.hold() : 'held';
    this.holder.set(state === 'elsewhere' ? 0 : 1);
    if (state === 'elsewhere' || this.stopped) return 0;
    this.passes.inc();
    const keepAlive = lease && setInterval(() => void lease.hold(), this.config.data.aggregation.leaseMs / 3);
    try {
      return await this.runOnce();
    } finally {
      clearInterval(keepAlive);
    }
  }

  private schedule(delayMs: number): void {
    if (this.stopped) return;
    const { enabled, intervalMs } = this.config.data.aggregation;
    this.timer = setTimeout(() => {
      // Disabled, it still drops the old days of telemetry_1m_source: its view fills it anyway.
      this.running = (enabled ? this.leasedPass() : this.dropOldSourceDays().then(() => 0))
        .then((count) => {
          if (count > 0) this.logger.debug(`recomputed ${count} device-minute(s)`);
        })
        .catch((error: unknown) => {
          this.failures.inc();
          this.logger.warn(`aggregation failed, retrying: ${errorMessage(error)}`);
        })
        .finally(() => this.schedule(enabled ? intervalMs : PRUNE_INTERVAL_MS));
    }, delayMs);
    this.timer.unref();
  }
}
