import type { MetricsRegistry } from '@dmp/observability';
import { Counter, Gauge, Histogram } from 'prom-client';

/**
 * Metrics for a RocketMQ client: shared by every producer/consumer of an app (the first one
 * registers them), or detached when the app passed no registry.
 */
export class ClientMetrics {
  constructor(private readonly metrics?: MetricsRegistry) {}

  counter<L extends string>(name: string, help: string, labelNames: readonly L[]): Counter<L> {
    const existing = this.metrics?.registry.getSingleMetric(name);
    if (existing) return existing as Counter<L>;
    return this.metrics
      ? this.metrics.counter(name, help, labelNames)
      : new Counter({ name, help, labelNames, registers: [] });
  }

  gauge<L extends string>(name: string, help: string, labelNames: readonly L[]): Gauge<L> {
    const existing = this.metrics?.registry.getSingleMetric(name);
    if (existing) return existing as Gauge<L>;
    return this.metrics
      ? this.metrics.gauge(name, help, labelNames)
      : new Gauge({ name, help, labelNames, registers: [] });
  }

  histogram<L extends string>(
    name: string,
    help: string,
    labelNames: readonly L[],
    buckets?: number[],
  ): Histogram<L> {
    const existing = this.metrics?.registry.getSingleMetric(name);
    if (existing) return existing as Histogram<L>;
    return this.metrics
      ? this.metrics.histogram(name, help, labelNames, buckets)
      : new Histogram({ name, help, labelNames, registers: [], ...(buckets ? { buckets } : {}) });
  }
}

/** Rejects with `onTimeout()` when `promise` has not settled within `ms`. */
export async function withTimeout<T>(promise: Promise<T>, ms: number, onTimeout: () => Error): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      promise,
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(onTimeout()), ms);
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

/** A sleep that `wake()` ends early (used to stop loops promptly on shutdown). */
export class Sleeper {
  private readonly waiting = new Set<() => void>();

  sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        this.waiting.delete(done);
        resolve();
      };
      const timer = setTimeout(done, ms);
      this.waiting.add(done);
    });
  }

  wake(): void {
    for (const done of [...this.waiting]) done();
  }
}
