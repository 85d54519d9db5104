/**
 * DMP on a ClickHouse cluster (CLICKHOUSE_CLUSTER): the ClickHouse part of the local stack's cluster
 * profile (`scripts/stack.sh up --cluster`: ZooKeeper and cluster `dmp`, 2 shards × 2 replicas of 18.16 on
 * 127.0.0.1:8211/8212/8221/8222), brought up here if it is not running, and only what this file
 * started brought down again. The real migrations (twice), dmp-data's telemetry writer for many
 * devices, its aggregator; one replica stopped while telemetry is stored. Own database
 * `dmp_test_cluster_<random>`, dropped on every server at the end. The single-node stack is not used.
 */
import {
  applyMigrations,
  ClickHouseRepository,
  localTable,
  migrations,
  Tables,
  type TelemetryRawRow,
  toTelemetryRows,
} from '@dmp/clickhouse';
import type { NormalizedTelemetry } from '@dmp/contracts';
import { MetricsRegistry } from '@dmp/observability';
import {
  CLUSTER_SERVERS,
  clusterDown,
  clusterUp,
  readMinuteAggregates,
  stack,
  stackScriptOutput,
  type ClusterServer,
  waitFor,
  type MinuteAggregate,
  expectedAggregates,
} from '@dmp/testing';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { isDeepStrictEqual } from 'node:util';
import { MinuteAggregator } from '../apps/dmp-data/src/aggregation/aggregation.service';
import { EVERY_DEVICE } from '../apps/dmp-data/src/aggregation/minute-aggregation';
import { loadDataConfig } from '../apps/dmp-data/src/config';
import { TelemetryBatchWriter } from '../apps/dmp-data/src/storage/telemetry-batch-writer';

const SERVERS = CLUSTER_SERVERS;
type Server = ClusterServer;
const stackSh = stackScriptOutput;

const database = `dmp_test_cluster_${randomBytes(4).toString('hex')}`;
const DEVICES = Array.from({ length: 120 }, (_, i) => `cl-dev-${String(i).padStart(3, '0')}`);
/** Minutes well in the past: due for the aggregator at once (no lateness). */
const START = Math.floor((Date.now() - 20 * 60_000) / 60_000) * 60_000;

function message(device: number, n: number, extra: Partial<NormalizedTelemetry> = {}): NormalizedTelemetry {
  const ts = START + n * 15_000 + device * 7 + (n % 3);
  return {
    deviceId: DEVICES[device],
    messageId: `${DEVICES[device]}-${String(n).padStart(4, '0')}`,
    kind: 'telemetry',
    ts,
    metrics: { temp: 20 + ((device * 7 + n * 3) % 11) / 2, hum: 40 + (n % 5) },
    receivedAt: ts + 100,
    tenantId: 'tenant-1',
    productId: 'thermo',
    siteId: 'site-a',
    ...extra,
  };
}

describe('DMP on a ClickHouse cluster (2 shards × 2 replicas, 18.16)', { timeout: 240_000 }, () => {
  const config = loadDataConfig({
    CLICKHOUSE_CLUSTER: 'dmp',
    DATA_AGGREGATION_LATENESS_MS: '0',
    DATA_BATCH_MAX_WAIT_MS: '50',
    DATA_INSERT_RETRY_MAX_MS: '60000',
  });
  const stored = new Map<string, NormalizedTelemetry>();
  let startedHere: string[] = [];
  let repository: ClickHouseRepository;
  const onServer = new Map<Server, ClickHouseRepository>();
  let writer: TelemetryBatchWriter;

  const count = async (server: Server, sql: string) =>
    Number((await onServer.get(server)!.query<{ n: number }>(sql))[0].n);
  const localRows = (server: Server, table: string = Tables.raw) =>
    count(server, `SELECT count() AS n FROM ${localTable(table)}`);
  const store = (messages: NormalizedTelemetry[]) =>
    Promise.all(
      messages.map((m) => {
        stored.set(m.messageId, m);
        return writer.store(toTelemetryRows(m));
      }),
    );
  /** Both replicas of each shard hold the same rows of `table` (`total` of them, when given). */
  const replicasAgree = (table: string, total?: number) =>
    waitFor(`the replicas of ${table} to agree`, async () => {
      const [a, b, c, d] = await Promise.all(
        (Object.keys(SERVERS) as Server[]).map((s) => localRows(s, table)),
      );
      return a === b && c === d && (total === undefined || a + c === total) && [a, c];
    });

  before(async () => {
    startedHere = await clusterUp();
    repository = new ClickHouseRepository({
      ...stack.clickhouse,
      url: SERVERS['clickhouse-s1r1'],
      database,
      cluster: 'dmp',
      // The aggregator reads marks up to `now − timeout − 1 s`.
      requestTimeoutMs: 5_000,
    });
    for (const [name, url] of Object.entries(SERVERS))
      onServer.set(name as Server, new ClickHouseRepository({ ...stack.clickhouse, url, database }));
    writer = new TelemetryBatchWriter(repository, new MetricsRegistry('clickhouse-cluster-test'), config);
  });

  after(async () => {
    await writer?.close();
    // Whatever a failed step left stopped is started again before the database is dropped everywhere.
    await clusterUp().catch(() => undefined);
    await repository
      ?.forDatabase('default')
      .command(`DROP DATABASE IF EXISTS ${database} ON CLUSTER dmp`)
      .catch(() => undefined);
    await Promise.all([repository?.close(), ...[...onServer.values()].map((r) => r.close())]);
    await clusterDown(startedHere);
  });

  it('creates the schema on every server, ON CLUSTER, and again without changing anything', async () => {
    const first = await applyMigrations(repository, migrations);
    assert.equal(first.server, '18.16.1');
    assert.ok(first.applied.length >= 7);
    const second = await applyMigrations(repository, migrations);
    assert.deepEqual(second.applied, []);
    assert.equal(second.alreadyApplied, first.applied.length);
    for (const server of Object.keys(SERVERS) as Server[]) {
      const tables = await onServer
        .get(server)!
        .query<{ name: string; engine: string }>(
          `SELECT name, engine FROM system.tables WHERE database = '${database}' ORDER BY name`,
        );
      const engine = new Map(tables.map((t) => [t.name, t.engine]));
      assert.equal(engine.get(Tables.raw), 'Distributed', server);
      assert.equal(engine.get(localTable(Tables.raw)), 'ReplicatedReplacingMergeTree', server);
      assert.equal(engine.get(localTable(Tables.minuteMarks)), 'ReplicatedMergeTree', server);
      assert.equal(engine.get(Tables.minuteProgress), 'ReplicatedReplacingMergeTree', server);
      assert.equal(engine.get(`${Tables.minuteSource}_mv`), 'MaterializedView', server);
      // The migration log is on every server: each one knows the schema is there.
      await waitFor(`${server}'s schema_migrations`, async () =>
        (await count(server, `SELECT uniqExact(version) AS n FROM ${Tables.migrations}`)) ===
        first.applied.length
          ? true
          : undefined,
      );
    }
  });

  it("stores dmp-data's telemetry on both shards, each on both replicas; FINAL collapses redeliveries", async () => {
    await store(DEVICES.flatMap((_, d) => [0, 1, 2, 3, 4].map((n) => message(d, n))));
    const total = stored.size;
    // Acknowledged means stored on the shards (synchronous Distributed inserts), whichever replica took it.
    const shards = await Promise.all((Object.keys(SERVERS) as Server[]).map((s) => localRows(s)));
    assert.equal(Math.max(shards[0], shards[1]) + Math.max(shards[2], shards[3]), total);
    const [shard1, shard2] = await replicasAgree(Tables.raw, total);
    assert.ok(shard1 > total / 4 && shard2 > total / 4, `${shard1} / ${shard2}`);
    // Every device on exactly one shard.
    const devicesOn = (server: Server) =>
      count(server, `SELECT uniqExact(device_id) AS n FROM ${localTable(Tables.raw)}`);
    assert.equal((await devicesOn('clickhouse-s1r1')) + (await devicesOn('clickhouse-s2r1')), DEVICES.length);

    // Redelivered (another receive time: a different block, the same keys).
    const again = DEVICES.slice(0, 40).map((_, d) => ({ ...message(d, 0), receivedAt: Date.now() }));
    await Promise.all(again.map((m) => writer.store(toTelemetryRows(m))));
    const [final] = await repository.query<{ n: number; ids: number }>(
      `SELECT count() AS n, uniqExact(message_id) AS ids FROM ${Tables.raw} FINAL`,
    );
    assert.deepEqual([Number(final.n), Number(final.ids)], [total, total]);
    const [latest] = await repository.query<{ n: number }>(`SELECT count() AS n FROM ${Tables.latest} FINAL`);
    assert.equal(Number(latest.n), DEVICES.length * 2);
  });

  it('drops a retried batch: the same block is stored once on each shard', async () => {
    const rows: TelemetryRawRow[] = DEVICES.map((_, d) => toTelemetryRows(message(d, 5)).raw);
    for (const m of DEVICES.map((_, d) => message(d, 5))) stored.set(m.messageId, m);
    const before = (await localRows('clickhouse-s1r1')) + (await localRows('clickhouse-s2r1'));
    await repository.insertRows(Tables.raw, rows);
    await repository.insertRows(Tables.raw, rows);
    const after = (await localRows('clickhouse-s1r1')) + (await localRows('clickhouse-s2r1'));
    assert.equal(after - before, rows.length);
  });

  it('keeps storing and acknowledging with a replica down; the replica catches up when back', async () => {
    await stackSh('down', 'clickhouse-s1r2');
    try {
      const started = Date.now();
      await store(DEVICES.flatMap((_, d) => [6, 7].map((n) => message(d, n))));
      assert.ok(Date.now() - started < 30_000, `acknowledged after ${Date.now() - started} ms`);
      const [final] = await repository.query<{ n: number }>(`SELECT count() AS n FROM ${Tables.raw} FINAL`);
      assert.equal(Number(final.n), stored.size);
    } finally {
      await stackSh('up', 'clickhouse-s1r2');
    }
    // Shard 1's rows of the outage, written to clickhouse-s1r1 alone, reach clickhouse-s1r2 too.
    await waitFor('clickhouse-s1r2 to have the rows stored while it was down', async () => {
      const final = `SELECT count() AS n FROM ${localTable(Tables.raw)} FINAL`;
      const [r1, r2] = await Promise.all([count('clickhouse-s1r1', final), count('clickhouse-s1r2', final)]);
      return r1 === r2 && r1 > 0;
    });
    await replicasAgree(Tables.minuteMarks);
  });

  it('retries a batch one shard refused as the same block: the shard that stored it drops the copy', async () => {
    // 18.16 connects to every shard before it sends any row: a shard that is down fails an insert
    // before any other stored its part. A shard refuses after another stored its part when an insert's
    // quorum cannot be met there: with clickhouse-s2r2 down, shard 1 stores a quorum insert and shard 2
    // refuses it (too few live replicas); the repository sends it again without the quorum — the
    // same block (the rows carry their `inserted_at`), which shard 1 drops as a duplicate.
    const duplicated = (server: Server) =>
      count(
        server,
        `SELECT toUInt64(sum(value)) AS n FROM system.events WHERE event = 'DuplicatedInsertedBlocks'`,
      );
    const shard1 = ['clickhouse-s1r1', 'clickhouse-s1r2'] as const;
    const dropped = async () => (await duplicated(shard1[0])) + (await duplicated(shard1[1]));
    // In minute 1, which the writer's messages marked for the aggregator.
    const batch = DEVICES.map((_, d) => message(d, 4, { messageId: `${DEVICES[d]}-0004-retried` }));
    const rows: TelemetryRawRow[] = batch.map((m) => toTelemetryRows(m).raw);
    const before = await dropped();
    await stackSh('down', 'clickhouse-s2r2');
    try {
      await repository.insertRows(Tables.raw, rows, { quorum: true });
    } finally {
      await stackSh('up', 'clickhouse-s2r2');
    }
    for (const m of batch) stored.set(m.messageId, m);
    assert.ok((await dropped()) > before, 'shard 1 dropped the block sent again');
    // Stored once (counted without FINAL: the copy never became a part), on both replicas of each shard.
    const [shard1Rows, shard2Rows] = await replicasAgree(Tables.raw);
    const batchRows = (server: Server) =>
      count(server, `SELECT count() AS n FROM ${localTable(Tables.raw)} WHERE message_id LIKE '%-retried'`);
    const [one, two] = await Promise.all([batchRows('clickhouse-s1r2'), batchRows('clickhouse-s2r2')]);
    assert.ok(one > 0 && two > 0 && shard1Rows > 0 && shard2Rows > 0);
    assert.equal(one + two, batch.length);
  });

  it('recomputes exact 1-minute aggregates from every shard', async () => {
    const aggregator = new MinuteAggregator(repository, config, new MetricsRegistry('cluster-aggregator'));
    const expected = expectedAggregates(stored.values());
    let got: MinuteAggregate[] = [];
    await waitFor(
      () => `telemetry_1m to equal the stored messages (${got.length} of ${expected.length} rows)`,
      async () => {
        await aggregator.runOnce();
        got = await readMinuteAggregates(repository, `${Tables.minute} FINAL`, '1 = 1');
        return isDeepStrictEqual(got, expected);
      },
      { timeoutMs: 60_000, intervalMs: 1_000 },
    );
    assert.deepEqual(got, expected);
    // On both shards, and both replicas of each.
    assert.ok((await localRows('clickhouse-s1r1', Tables.minute)) > 0);
    assert.ok((await localRows('clickhouse-s2r1', Tables.minute)) > 0);
    await replicasAgree(Tables.minute);

    // A whole-minute mark (on-time data: one shard holds it) recomputes every device of the minute on
    // every shard: here raw rows of all devices without marks of their own.
    const unmarked = DEVICES.map((_, d) =>
      message(d, 1, { messageId: `${DEVICES[d]}-whole`, metrics: { temp: d } }),
    );
    await repository.insertRows(
      Tables.raw,
      unmarked.map((m) => toTelemetryRows(m).raw),
    );
    await repository.insertRows(Tables.minuteMarks, [{ device_id: EVERY_DEVICE, minute: START / 1000 }], {
      columns: ['device_id', 'minute'],
      quorum: true,
    });
    for (const m of unmarked) stored.set(m.messageId, m);
    const withUnmarked = expectedAggregates(stored.values());
    await waitFor(
      () => `telemetry_1m to include the unmarked rows (${got.length} of ${withUnmarked.length} rows)`,
      async () => {
        await aggregator.runOnce();
        got = await readMinuteAggregates(repository, `${Tables.minute} FINAL`, '1 = 1');
        return isDeepStrictEqual(got, withUnmarked);
      },
      { timeoutMs: 60_000, intervalMs: 1_000 },
    );
  });
});
