import type { ClickHouseRepository } from './clickhouse.repository';
import { localTable } from './cluster';
import { serverFeatures } from './server-version';
import { identifier, stringLiteral } from './sql';

export interface RetentionResult {
  table: string;
  method: 'ttl' | 'drop_partitions';
  droppedPartitions: string[];
}

/**
 * Keeps `days` of data in a table partitioned by a DateTime column. Servers with table TTL
 * (19.6+) get `MODIFY TTL` (idempotent; rows expire as parts merge); older ones (18.16) drop every
 * partition whose newest row is older than the cutoff — whole partitions only, so with monthly
 * partitions up to a month more than `days` is kept.
 */
export async function applyRetention(
  repository: ClickHouseRepository,
  { table, days, timeColumn = 'ts' }: { table: string; days: number; timeColumn?: string },
): Promise<RetentionResult> {
  if (!Number.isInteger(days) || days <= 0)
    throw new Error(`retention days must be a positive integer, got ${days}`);
  identifier(table);
  identifier(timeColumn);
  const features = serverFeatures(await repository.serverVersion());
  if (features.tableTtl) {
    await repository.command(
      `ALTER TABLE ${onEveryShard(repository, table)} MODIFY TTL ${timeColumn} + toIntervalDay(${days})`,
    );
    return { table, method: 'ttl', droppedPartitions: [] };
  }
  const droppedPartitions = await dropPartitionsBefore(repository, table, `now() - ${days * 86_400}`);
  return { table, method: 'drop_partitions', droppedPartitions };
}

/** `table`, or on a cluster its local tables on every server (the parts are there). */
function onEveryShard(repository: ClickHouseRepository, table: string): string {
  const cluster = repository.cluster;
  return cluster === undefined
    ? table
    : `${repository.database}.${localTable(table)} ON CLUSTER ${identifier(cluster)}`;
}

/**
 * Drops every partition of `table` (partitioned by a DateTime column) whose newest row is older
 * than `cutoff` (a SQL DateTime expression); returns their ids. On a cluster the parts of every
 * shard are read (one replica each) and the partitions dropped on every server.
 */
export async function dropPartitionsBefore(
  repository: ClickHouseRepository,
  table: string,
  cutoff: string,
): Promise<string[]> {
  identifier(table);
  const cluster = repository.cluster;
  const parts = cluster === undefined ? 'system.parts' : `cluster(${identifier(cluster)}, system, parts)`;
  const partsOf = cluster === undefined ? table : localTable(table);
  const expired = await repository.query<{ partition_id: string }>(
    `SELECT partition_id FROM ${parts}
     WHERE database = ${stringLiteral(repository.database)} AND table = ${stringLiteral(partsOf)} AND active
     GROUP BY partition_id
     HAVING max(max_time) < ${cutoff}
     ORDER BY partition_id`,
  );
  for (const { partition_id } of expired)
    await repository.command(
      `ALTER TABLE ${onEveryShard(repository, table)} DROP PARTITION ID ${stringLiteral(partition_id)}`,
    );
  return expired.map((p) => p.partition_id);
}
