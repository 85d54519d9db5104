import type { ClickHouseRepository } from '../clickhouse.repository';
import { clusterStatements, createDatabaseOnCluster } from '../cluster';
import { serverFeatures } from '../server-version';
import { identifier, stringLiteral } from '../sql';
import type { Migration } from './migration';

export interface MigrationLogger {
  log(message: string): void;
  warn(message: string): void;
}

export interface MigrationReport {
  server: string;
  applied: string[];
  alreadyApplied: number;
  /** Migrations waiting for a server feature this server lacks (`Migration.requires`). */
  waiting: string[];
}

/** The migration log, created before any migration runs. */
export const SCHEMA_MIGRATIONS = `CREATE TABLE IF NOT EXISTS schema_migrations
(
    version     UInt32,
    name        String,
    applied_at  DateTime
)
ENGINE = ReplacingMergeTree()
ORDER BY version`;

/**
 * Creates the database if it is missing, then applies the migrations not yet recorded in
 * `schema_migrations`, in order. Safe to run at every start-up and from several instances at once.
 * On a cluster (`repository.cluster`) every statement runs in its cluster form (cluster.ts): `ON
 * CLUSTER`, so each server gets its tables (a server down gets them when it is back), and
 * `schema_migrations` is replicated on every server. Still idempotent and resumable: every form is
 * `IF NOT EXISTS`, and a migration is recorded only after all its statements ran.
 */
export async function applyMigrations(
  repository: ClickHouseRepository,
  migrations: readonly Migration[],
  logger?: MigrationLogger,
): Promise<MigrationReport> {
  const database = identifier(repository.database);
  const cluster = repository.cluster;
  const layout = cluster === undefined ? undefined : { database, cluster };
  const run = async (statement: string) => {
    for (const sql of layout ? clusterStatements(statement, layout) : [statement])
      await repository.command(sql);
  };
  const admin = repository.forDatabase('default');
  try {
    await admin.command(
      layout ? createDatabaseOnCluster(layout) : `CREATE DATABASE IF NOT EXISTS ${database}`,
    );
  } finally {
    await admin.close();
  }
  await run(SCHEMA_MIGRATIONS);

  const server = await repository.serverVersion();
  const done = new Set(
    (await repository.query<{ version: number }>('SELECT DISTINCT version FROM schema_migrations')).map(
      (row) => Number(row.version),
    ),
  );
  const known = new Set(migrations.map((m) => m.version));
  const unknown = [...done].filter((v) => !known.has(v));
  if (unknown.length > 0)
    logger?.warn(
      `schema_migrations has versions this build does not know (${unknown.join(', ')}): newer schema?`,
    );

  const features = serverFeatures(server);
  const applied: string[] = [];
  const waiting: string[] = [];
  for (const migration of [...migrations].sort((a, b) => a.version - b.version)) {
    if (done.has(migration.version)) continue;
    const label = `${String(migration.version).padStart(3, '0')}_${migration.name}`;
    if (migration.requires && !features[migration.requires]) {
      waiting.push(label);
      continue;
    }
    for (const statement of migration.statements({ database, server })) await run(statement);
    await repository.command(
      `INSERT INTO schema_migrations (version, name, applied_at) VALUES (${migration.version}, ${stringLiteral(migration.name)}, now())`,
    );
    applied.push(label);
    logger?.log(`ClickHouse migration ${label} applied to ${database}`);
  }
  return { server: server.raw, applied, alreadyApplied: done.size, waiting };
}
