import { DmpError, HistoryErrorCode } from '@dmp/contracts';
import type { ClickHouseRepository } from './clickhouse.repository';
import { identifier } from './sql';

/**
 * DMP's schema on a ClickHouse cluster (CLICKHOUSE_CLUSTER). Every table of the one-server schema
 * becomes, created `ON CLUSTER`:
 * - `<table>_local`: the same table with the replicated form of its engine
 *   (`ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/<database>/<table>_local', '{replica}', …)`),
 *   one copy per shard, replicated between the shard's replicas;
 * - `<table>`: a Distributed table with the original name over them, sharded by `cityHash64(device_id)`,
 *   so every version of a key (all keys start with, or contain, the device) lives on one shard and
 *   FINAL and merges collapse them there. Everything DMP reads and writes goes through it.
 * A table without a `device_id` column (`schema_migrations`, the aggregator's cursor) is kept whole on
 * every server instead: one replicated table whose replicas are all the servers, no Distributed table.
 *
 * The migrations are written for one server; `clusterStatements` rewrites each statement into its
 * cluster form. It knows the shapes the migrations use and refuses any other, so a new migration
 * cannot silently skip the cluster.
 */
export interface ClusterLayout {
  database: string;
  cluster: string;
}

export const localTable = (table: string): string => `${identifier(table)}_local`;

/** Whether a table is sharded (it has a `device_id` column) or kept whole on every server. */
const SHARDED_BY = 'cityHash64(device_id)';

const CREATE_TABLE =
  /^CREATE TABLE IF NOT EXISTS (\w+)\s*\n\(\n([\s\S]*?)\n\)\nENGINE = (\w*MergeTree)(?:\(([^)]*)\))?\n([\s\S]*)$/;
const CREATE_VIEW = /^CREATE MATERIALIZED VIEW IF NOT EXISTS (\w+) TO (\w+) AS\n([\s\S]*)$/;
const ALTER_TABLE = /^ALTER TABLE (\w+)\b([\s\S]*)$/;
const FROM_TABLE = /\bFROM (\w+)\b/g;

/** The statements that create `CREATE DATABASE IF NOT EXISTS` on every server of the cluster. */
export const createDatabaseOnCluster = ({ database, cluster }: ClusterLayout): string =>
  `CREATE DATABASE IF NOT EXISTS ${identifier(database)} ON CLUSTER ${identifier(cluster)}`;

/** The cluster form of one migration statement (see above). */
export function clusterStatements(statement: string, layout: ClusterLayout): string[] {
  const db = identifier(layout.database);
  const cluster = identifier(layout.cluster);
  const sql = statement.trim();

  const table = CREATE_TABLE.exec(sql);
  if (table) {
    const [, name, columns, engine, args = '', rest] = table;
    const sharded = /^\s*device_id\s/m.test(columns);
    // Sharded: one ZooKeeper path per shard, the shard's replicas under it. Whole: one path, every
    // server a replica of it (named by both macros, unique in the cluster).
    const path = sharded
      ? `'/clickhouse/tables/{shard}/${db}/${localTable(name)}'`
      : `'/clickhouse/tables/all/${db}/${name}'`;
    const replica = sharded ? `'{replica}'` : `'{shard}-{replica}'`;
    const replicated = `Replicated${engine}(${[path, replica, ...(args.trim() ? [args.trim()] : [])].join(', ')})`;
    const local = `CREATE TABLE IF NOT EXISTS ${db}.${sharded ? localTable(name) : name} ON CLUSTER ${cluster}\n(\n${columns}\n)\nENGINE = ${replicated}\n${rest}`;
    if (!sharded) return [local];
    // A Distributed table takes no MATERIALIZED column (18.16 would forward it to the shards' inserts):
    // the same expression as an ALIAS reads the same value.
    const distributedColumns = columns.replace(/\bMATERIALIZED\b/g, 'ALIAS');
    return [
      local,
      `CREATE TABLE IF NOT EXISTS ${db}.${name} ON CLUSTER ${cluster}\n(\n${distributedColumns}\n)\nENGINE = Distributed(${cluster}, ${db}, ${localTable(name)}, ${SHARDED_BY})`,
    ];
  }

  const view = CREATE_VIEW.exec(sql);
  if (view) {
    // On every server, from its own shard's local table into its own shard's local table: each
    // insert into a replica feeds the view once, and the target replicates what it wrote.
    const [, name, target, select] = view;
    return [
      `CREATE MATERIALIZED VIEW IF NOT EXISTS ${db}.${name} ON CLUSTER ${cluster} TO ${db}.${localTable(target)} AS\n${select.replace(FROM_TABLE, (_, from: string) => `FROM ${db}.${localTable(from)}`)}`,
    ];
  }

  const alter = ALTER_TABLE.exec(sql);
  if (alter) {
    // Column changes apply to the local tables and to the Distributed tables over them.
    const [, name, change] = alter;
    return [
      `ALTER TABLE ${db}.${localTable(name)} ON CLUSTER ${cluster}${change}`,
      `ALTER TABLE ${db}.${name} ON CLUSTER ${cluster}${change}`,
    ];
  }

  // Data copies read and write the Distributed tables, once, from the server that migrates.
  if (/^INSERT INTO \w+/.test(sql)) return [sql];
  throw new Error(`no cluster form for this migration statement:\n${sql}`);
}

/** Refuses jobs on a cluster: one server only for now (corrections and reprocessing). */
export function refuseCluster(clickhouse: ClickHouseRepository, job: string): void {
  if (clickhouse.cluster !== undefined)
    throw new DmpError(
      HistoryErrorCode.ClusterUnsupported,
      `${job} run on a single ClickHouse server only, not yet on a cluster (CLICKHOUSE_CLUSTER)`,
    );
}
