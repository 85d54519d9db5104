import { createClient, type ClickHouseClient } from '@clickhouse/client';
import { toTelemetryRows } from '@dmp/clickhouse';
import { stack } from '@dmp/testing';
import { performance } from 'node:perf_hooks';
import { SimulatedDevice } from '../../../../simulator/src/device-model';
import { seededRandom } from '../../suite';
import { fleetMix } from './analysis';

/** A string literal for ClickHouse SQL (18.16 has no query parameters). */
export const sqlString = (value: string) => `'${value.replaceAll('\\', '\\\\').replaceAll("'", "\\'")}'`;

/** The bench's own ClickHouse database: counts of a step's rows, the raw insert baseline, clean-up. */
export class BenchStore {
  readonly client: ClickHouseClient;

  constructor(readonly database: string) {
    this.client = createClient({
      url: stack.clickhouse.url,
      username: stack.clickhouse.username,
      password: stack.clickhouse.password,
      database: 'default',
    });
  }

  get rawTable(): string {
    return `${this.database}.telemetry_raw`;
  }

  private async one<T>(query: string): Promise<T> {
    const result = await this.client.query({ query, format: 'JSONEachRow' });
    const [row] = await result.json<T>();
    return row;
  }

  /**
   * Rows of `telemetry_raw`, duplicates included, from the parts' metadata: polled every second, it
   * reads no data (a count of a step's rows read them all, a share of ClickHouse's CPU in the bench).
   */
  async rows(): Promise<number> {
    const row = await this.one<{ n: string }>(
      `SELECT sum(rows) AS n FROM system.parts
       WHERE database = ${sqlString(this.database)} AND table = 'telemetry_raw' AND active`,
    );
    return Number(row.n);
  }

  /**
   * Rows each table got from inserts since `sinceSeconds` (server clock), materialized views' included:
   * the rows of the parts inserts made (level 0), merged away since or not (a merged part stays listed,
   * inactive, for `old_parts_lifetime`, 8 minutes by default: longer than a step). What ClickHouse wrote,
   * not what a table holds after ReplacingMergeTree collapsed it.
   */
  async rowsWrittenSince(sinceSeconds: number): Promise<Record<string, number>> {
    const result = await this.client.query({
      query: `SELECT table, sum(rows) AS n FROM system.parts
       WHERE database = ${sqlString(this.database)} AND level = 0
         AND modification_time >= toDateTime(${Math.floor(sinceSeconds)})
       GROUP BY table ORDER BY table`,
      format: 'JSONEachRow',
    });
    const rows = await result.json<{ table: string; n: string }>();
    return Object.fromEntries(rows.map((r) => [r.table, Number(r.n)]));
  }

  /** The server's clock, Unix seconds. */
  async serverSeconds(): Promise<number> {
    return Number((await this.one<{ now: string }>('SELECT toUInt32(now()) AS now')).now);
  }

  /** Distinct messages of devices `{prefix}-…`, and rows (more when a message was written twice). */
  async distinct(prefix: string): Promise<{ rows: number; messages: number }> {
    const row = await this.one<{ rows: string; ids: string }>(
      `SELECT count() AS rows, uniqExact(message_id) AS ids FROM ${this.rawTable}
       WHERE device_id LIKE ${sqlString(`${prefix}-%`)}`,
    );
    return { rows: Number(row.rows), messages: Number(row.ids) };
  }

  async drop(): Promise<void> {
    await this.client.command({ query: `DROP DATABASE IF EXISTS ${this.database}` });
  }

  async close(): Promise<void> {
    await this.client.close();
  }

  /**
   * Raw bulk insert rate: JSONEachRow batches of dmp-data's shape (its batch size, its insert
   * concurrency, rows built by its own `toTelemetryRows` from the simulator's readings in the benchmark's
   * mix) into a scratch table with telemetry_raw's schema, as fast as ClickHouse takes them.
   */
  async rawInsertRate({
    durationMs,
    batchRows = 5_000,
    concurrency = 2,
  }: {
    durationMs: number;
    batchRows?: number;
    concurrency?: number;
  }): Promise<{
    rowsPerSecond: number;
    rows: number;
    batches: number;
    batchRows: number;
    concurrency: number;
  }> {
    const scratch = `${this.database}.scratch_raw`;
    await this.client.command({ query: `DROP TABLE IF EXISTS ${scratch}` });
    await this.client.command({ query: `CREATE TABLE ${scratch} AS ${this.rawTable}` });
    const random = seededRandom(7);
    const devices = Array.from({ length: 10_000 }, (_, i) => new SimulatedDevice(`raw-${i}`, random));
    const snapshotShare = fleetMix(1_000, 100_000).snapshotsPerSecond / 1_000;
    const batch = () =>
      Array.from({ length: batchRows }, () => {
        const device = devices[Math.floor(random() * devices.length)];
        const now = Date.now();
        const reading = random() < snapshotShare ? device.snapshot(now) : device.change(now);
        return toTelemetryRows({
          deviceId: reading.deviceId,
          messageId: reading.messageId,
          kind: reading.channel,
          ts: reading.ts,
          seq: reading.seq,
          metrics: reading.metrics,
          receivedAt: now,
          tenantId: 't',
          productId: 'p',
          siteId: 's',
        }).raw;
      });
    // Batches are built ahead and sent again and again, so the rate is ClickHouse's, not the row
    // builder's (an insert is acknowledged once its part is written; repeats merge away later).
    const prepared = Array.from({ length: concurrency * 2 }, batch);
    let rows = 0;
    let batches = 0;
    const started = performance.now();
    const worker = async (w: number) => {
      for (let i = w; performance.now() - started < durationMs; i += concurrency) {
        const values = prepared[i % prepared.length];
        await this.client.insert({ table: scratch, values, format: 'JSONEachRow' });
        rows += values.length;
        batches++;
      }
    };
    await Promise.all(Array.from({ length: concurrency }, (_, w) => worker(w)));
    const seconds = (performance.now() - started) / 1000;
    await this.client.command({ query: `DROP TABLE IF EXISTS ${scratch}` });
    return { rowsPerSecond: rows / seconds, rows, batches, batchRows, concurrency };
  }
}
