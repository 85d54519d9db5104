import { Injectable } from '@nestjs/common';
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';
import { spanExportStats } from './telemetry';

/**
 * Buckets in seconds for per-hop latencies: 0.5 ms … 60 s. Past 10 s for the work that includes
 * retries (dmp-mqtt's hand-off up to KERNEL_RETRY_DEADLINE_MS, dmp-data's inserts up to
 * DATA_INSERT_RETRY_MAX_MS): a quantile above the last bucket would read as that bucket.
 */
export const LATENCY_BUCKETS = [
  0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60,
];

/**
 * Buckets in seconds for ages (RocketMQ backlog age, end-to-end latency): 5 ms … 1 h, no step
 * larger than 2.5×, so that a quantile between two bounds (interpolated linearly) stays close; the
 * alert thresholds (10 s, 30 s, 5 min) are bounds.
 */
export const AGE_BUCKETS = [
  0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120, 180, 300, 600, 900, 1800, 3600,
];

/**
 * One Prometheus registry per app, with Node defaults (event-loop lag, heap, GC) and the span
 * exporter's counters. Features register their metrics here through the helpers.
 */
@Injectable()
export class MetricsRegistry {
  readonly registry = new Registry();

  constructor(serviceName: string) {
    this.registry.setDefaultLabels({ service: serviceName });
    collectDefaultMetrics({ register: this.registry, eventLoopMonitoringPrecision: 10 });
    this.spanCounter(
      'dmp_otel_spans_exported_total',
      'Spans the OTLP exporter delivered',
      () => spanExportStats.exported,
    );
    this.spanCounter(
      'dmp_otel_spans_export_failed_total',
      'Spans the OTLP exporter failed to deliver',
      () => spanExportStats.failed,
    );
    this.spanCounter('dmp_otel_spans_dropped_total', 'Spans dropped because the export queue was full', () =>
      spanExportStats.dropped(),
    );
  }

  /** A counter mirroring a count kept elsewhere (the span exporter's), read at scrape time. */
  private spanCounter(name: string, help: string, read: () => number): void {
    new Counter({
      name,
      help,
      registers: [this.registry],
      collect() {
        this.reset();
        this.inc(read());
      },
    });
  }

  counter<L extends string>(name: string, help: string, labelNames: readonly L[] = []): Counter<L> {
    return new Counter({ name, help, labelNames, registers: [this.registry] });
  }

  gauge<L extends string>(
    name: string,
    help: string,
    labelNames: readonly L[] = [],
    collect?: (this: Gauge<L>) => void | Promise<void>,
  ): Gauge<L> {
    return new Gauge({ name, help, labelNames, registers: [this.registry], ...(collect ? { collect } : {}) });
  }

  histogram<L extends string>(
    name: string,
    help: string,
    labelNames: readonly L[] = [],
    buckets: number[] = LATENCY_BUCKETS,
  ): Histogram<L> {
    return new Histogram({ name, help, labelNames, buckets, registers: [this.registry] });
  }
}
