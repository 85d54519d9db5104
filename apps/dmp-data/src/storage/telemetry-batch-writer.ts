import {
  ClickHouseRepository,
  isDataError,
  newestPerMetric,
  Tables,
  toDateTimeSeconds,
  type TelemetryRows,
} from '@dmp/clickhouse';
import { errorMessage } from '@dmp/contracts';
import { AGE_BUCKETS, MetricsRegistry } from '@dmp/observability';
import { Inject, Injectable, Logger } from '@nestjs/common';
import { context, type Context, type Link } from '@opentelemetry/api';
import type { Histogram } from 'prom-client';
import { minuteMarks } from '../aggregation/minute-aggregation';
import { DATA_CONFIG, type DataConfig } from '../config';
import { BatchWriter, MAX_BATCH_LINKS } from './batch-writer';

/** A message on its way into ClickHouse. */
export interface TelemetryWrite {
  rows: TelemetryRows;
  /** The context the message was handled in (its `process` span): its trace shows the insert. */
  parent: Context;
  /** The message's producer, linked from the batch span. */
  link?: Link;
}

const BATCH_BUCKETS = [1, 10, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 25000, 50000];

/**
 * The batching writer of dmp-data: messages go to `telemetry_raw` (one row each), then their
 * newest metric values to `telemetry_latest` (one row per device and metric of the batch), then the
 * minutes they touched to `telemetry_1m_marks` (one row per minute, or per device and minute for late
 * data: see minuteMarks); each message's promise resolves once all inserts of its batch succeeded.
 * On shutdown it drains after the consumer stopped (ConsumerLifecycle).
 */
@Injectable()
export class TelemetryBatchWriter {
  private readonly logger = new Logger(TelemetryBatchWriter.name);
  private readonly writer: BatchWriter<TelemetryWrite>;
  private readonly batchRows: Histogram;
  private readonly endToEnd: Histogram;
  private readonly aggregation: boolean;
  private readonly latenessSeconds: number;
  /**
   * Rows already stamped with `inserted_at`: a retried batch is sent as the very same block, which a
   * replicated table (a cluster) deduplicates instead of storing it again until FINAL or a merge.
   */
  private readonly stamped = new WeakSet<object>();

  constructor(
    private readonly clickhouse: ClickHouseRepository,
    metrics: MetricsRegistry,
    @Inject(DATA_CONFIG) config: DataConfig,
  ) {
    this.aggregation = config.data.aggregation.enabled;
    this.latenessSeconds = Math.ceil(config.data.aggregation.latenessMs / 1000);
    this.writer = new BatchWriter<TelemetryWrite>((items) => this.insert(items), config.data.batch, {
      isItemError: isDataError,
      onRetry: (error, attempt, items, delayMs) =>
        this.logger.warn(
          `insert of ${items} message(s) failed (attempt ${attempt}), retrying in ${delayMs} ms: ${errorMessage(error)}`,
        ),
      onFailed: (error, items, retryable) =>
        this.logger.error(
          `insert of ${items.length} message(s) failed for good (${retryable ? 'redelivered later' : 'dead-lettered'}): ${errorMessage(error)}`,
        ),
    });
    this.batchRows = metrics.histogram(
      'dmp_data_batch_rows',
      'Messages per ClickHouse batch',
      [],
      BATCH_BUCKETS,
    );
    this.endToEnd = metrics.histogram(
      'dmp_data_end_to_end_seconds',
      'From the device timestamp to the insert into ClickHouse',
      [],
      AGE_BUCKETS,
    );
    const writer = this.writer;
    metrics.gauge(
      'dmp_data_queue_rows',
      'Messages held by the batch writer (queued or being inserted)',
      [],
      function () {
        this.set(writer.heldRows);
      },
    );
    metrics.gauge(
      'dmp_data_queue_age_seconds',
      'How long the oldest message held by the batch writer has waited to be stored (0 when none is held)',
      [],
      function () {
        this.set(writer.oldestHeldAgeMs() / 1000);
      },
    );
  }

  /** Resolves when the message is durable in ClickHouse (every insert of its batch succeeded). */
  store(rows: TelemetryRows, link?: Link): Promise<void> {
    return this.writer.write({ rows, parent: context.active(), ...(link ? { link } : {}) });
  }

  /** Shutdown: no more waiting for fuller batches. */
  flushEagerly(): void {
    this.writer.flushEagerly();
  }

  get heldRows(): number {
    return this.writer.heldRows;
  }

  /** Drains (bounded), then refuses writes; called on shutdown once the consumer stopped. */
  close(drainTimeoutMs?: number): Promise<void> {
    return this.writer.close(drainTimeoutMs);
  }

  private async insert(items: readonly TelemetryWrite[]): Promise<void> {
    const insertedAt = toDateTimeSeconds(Date.now());
    const stamp = (row: { inserted_at: number }) => {
      if (this.stamped.has(row)) return;
      row.inserted_at = insertedAt;
      this.stamped.add(row);
    };
    const raw = new Map<string, TelemetryWrite['rows']['raw']>();
    for (const { rows } of items) {
      stamp(rows.raw);
      raw.set(`${rows.raw.device_id}\u0000${rows.raw.message_id}\u0000${rows.raw.ts_ms}`, rows.raw);
    }
    const latest = newestPerMetric(items.flatMap(({ rows }) => rows.latest));
    for (const row of latest) stamp(row);

    const links = items.flatMap(({ link }) => (link ? [link] : [])).slice(0, MAX_BATCH_LINKS);
    const parents = items.map(({ parent }) => parent);
    this.batchRows.observe(items.length);
    // Raw first: a mark must not exist before its rows (the aggregator could recompute the minute
    // from a snapshot without them and move past the mark), and latest should never show what raw
    // does not have. `marked_at` is the server's clock at the mark's insert (see MinuteAggregator).
    await this.clickhouse.insertRows(Tables.raw, [...raw.values()], { links, parents });
    // The writer's clock decides only whether a minute is marked whole or per device (minuteMarks).
    const marks = this.aggregation
      ? minuteMarks(raw.values(), Math.floor(Date.now() / 1000), this.latenessSeconds)
      : [];
    await Promise.all([
      this.clickhouse.insertRows(Tables.latest, latest, { links, parents }),
      // Before the ack: after a crash the minutes to recompute are still recorded in ClickHouse. On a
      // cluster, on every replica before the ack (quorum): the aggregator may read any of them.
      this.clickhouse.insertRows(Tables.minuteMarks, marks, {
        links,
        columns: ['device_id', 'minute'],
        quorum: true,
      }),
    ]);

    const now = Date.now();
    for (const { rows } of items) this.endToEnd.observe(Math.max(0, (now - rows.raw.ts_ms) / 1000));
  }
}
