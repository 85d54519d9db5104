import type { ClickHouseClient } from '@clickhouse/client';
import { setTimeout as sleep } from 'node:timers/promises';
import { sqlString } from './bench-store';

/**
 * End-to-end latency of sampled messages: publish time (the bench's clock, which is also the payload's
 * `ts`) to the first poll of `telemetry_raw` that finds the row. Every poll asks for the sampled ids not
 * found yet (primary-key lookup by device), so a latency is an upper bound, at most one poll cycle
 * (`resolutionMs`, the mean time from one poll's start to the next one's end) above the truth.
 */
export class LatencyProbe {
  private readonly pending = new Map<string, { deviceId: string; sentAt: number }>();
  readonly latenciesMs: number[] = [];
  private polls = 0;
  private pollMsTotal = 0;
  private stopped = false;
  private loop: Promise<void> | undefined;

  constructor(
    private readonly clickhouse: ClickHouseClient,
    private readonly table: string,
    private readonly intervalMs = 100,
    private readonly maxIdsPerPoll = 2_000,
  ) {}

  add(deviceId: string, messageId: string, sentAt: number): void {
    this.pending.set(messageId, { deviceId, sentAt });
  }

  get waiting(): number {
    return this.pending.size;
  }

  /** Mean cycle of the polls: the latencies' resolution. */
  get resolutionMs(): number {
    return this.polls ? this.pollMsTotal / this.polls + this.intervalMs : Number.NaN;
  }

  start(): void {
    this.stopped = false;
    this.loop = this.run();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    await this.loop;
  }

  private async run(): Promise<void> {
    while (!this.stopped) {
      const started = Date.now();
      if (this.pending.size > 0) {
        await this.poll().catch(() => undefined); // a failed poll only costs resolution
        this.polls++;
        this.pollMsTotal += Date.now() - started;
      }
      await sleep(this.intervalMs);
    }
  }

  private async poll(): Promise<void> {
    const batch = [...this.pending].slice(0, this.maxIdsPerPoll);
    const devices = [...new Set(batch.map(([, m]) => m.deviceId))];
    const result = await this.clickhouse.query({
      query: `SELECT message_id FROM ${this.table}
              WHERE device_id IN (${devices.map(sqlString).join(',')})
                AND message_id IN (${batch.map(([id]) => sqlString(id)).join(',')})`,
      format: 'JSONEachRow',
    });
    const found = await result.json<{ message_id: string }>();
    const seenAt = Date.now();
    for (const { message_id } of found) {
      const message = this.pending.get(message_id);
      if (!message) continue;
      this.pending.delete(message_id);
      this.latenciesMs.push(seenAt - message.sentAt);
    }
  }
}
