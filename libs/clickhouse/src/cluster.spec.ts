import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { clusterStatements, createDatabaseOnCluster } from './cluster';
import { migrations } from './migrations';
import { parseServerVersion } from './server-version';

const layout = { database: 'dmp', cluster: 'dmp_cluster' };
const allStatements = (major: number) =>
  migrations.flatMap((m) =>
    m.statements({ database: layout.database, server: parseServerVersion(`${major}.1`) }),
  );

describe('the cluster form of the migrations', () => {
  it('has one for every statement of every migration', () => {
    for (const statement of allStatements(26)) {
      const forms = clusterStatements(statement, layout);
      assert.ok(forms.length > 0);
      for (const sql of forms)
        if (!sql.startsWith('INSERT')) assert.match(sql, / ON CLUSTER dmp_cluster\b/, sql);
    }
  });

  it('makes a device table a replicated local table and a Distributed table sharded by device', () => {
    const raw = allStatements(18).find((s) => s.includes('CREATE TABLE IF NOT EXISTS telemetry_latest'))!;
    const [local, distributed, ...more] = clusterStatements(raw, layout);
    assert.deepEqual(more, []);
    assert.match(local, /^CREATE TABLE IF NOT EXISTS dmp\.telemetry_latest_local ON CLUSTER dmp_cluster\n/);
    assert.match(
      local,
      /ENGINE = ReplicatedReplacingMergeTree\('\/clickhouse\/tables\/\{shard\}\/dmp\/telemetry_latest_local', '\{replica\}', version\)\nORDER BY/,
    );
    assert.match(local, /version +UInt64 MATERIALIZED/);
    assert.match(
      distributed,
      /ENGINE = Distributed\(dmp_cluster, dmp, telemetry_latest_local, cityHash64\(device_id\)\)$/,
    );
    // A Distributed table forwards MATERIALIZED columns to the shards' inserts (18.16): an ALIAS.
    assert.match(distributed, /version +UInt64 ALIAS ts_ms \* 1024/);
  });

  it('keeps a table without devices whole on every server', () => {
    const progress = allStatements(18).find((s) => s.includes('telemetry_1m_progress'))!;
    assert.deepEqual(clusterStatements(progress, layout), [
      progress
        .replace('telemetry_1m_progress', 'dmp.telemetry_1m_progress ON CLUSTER dmp_cluster')
        .replace(
          'ReplacingMergeTree(marks_until)',
          "ReplicatedReplacingMergeTree('/clickhouse/tables/all/dmp/telemetry_1m_progress', '{shard}-{replica}', marks_until)",
        ),
    ]);
  });

  it('creates the view on every server, from and into the local tables', () => {
    const view = allStatements(18).find((s) => s.startsWith('CREATE MATERIALIZED VIEW'))!;
    const [sql] = clusterStatements(view, layout);
    assert.match(
      sql,
      /^CREATE MATERIALIZED VIEW IF NOT EXISTS dmp\.telemetry_1m_source_mv ON CLUSTER dmp_cluster TO dmp\.telemetry_1m_source_local AS\n/,
    );
    assert.match(sql, /\nFROM dmp\.telemetry_raw_local\n/);
  });

  it('alters the local and the Distributed tables', () => {
    assert.deepEqual(
      clusterStatements('ALTER TABLE telemetry_raw ADD COLUMN IF NOT EXISTS x UInt8', layout),
      [
        'ALTER TABLE dmp.telemetry_raw_local ON CLUSTER dmp_cluster ADD COLUMN IF NOT EXISTS x UInt8',
        'ALTER TABLE dmp.telemetry_raw ON CLUSTER dmp_cluster ADD COLUMN IF NOT EXISTS x UInt8',
      ],
    );
  });

  it('refuses a statement it has no cluster form for, and names that are not plain', () => {
    assert.throws(() => clusterStatements('DROP TABLE telemetry_raw', layout), /no cluster form/);
    assert.throws(() => createDatabaseOnCluster({ database: 'dmp', cluster: 'a-b' }), /plain SQL identifier/);
  });
});
