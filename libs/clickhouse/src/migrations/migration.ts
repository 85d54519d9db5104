import type { ServerVersion } from '../server-version';

export interface MigrationContext {
  database: string;
  server: ServerVersion;
}

/**
 * One schema step. Every statement must be idempotent (`IF NOT EXISTS`…): a migration interrupted
 * between statements, or applied by two instances starting at once, is simply run again.
 * Statements must run on ClickHouse 18.16 or be gated on `ctx.server`.
 */
export interface Migration {
  version: number;
  name: string;
  statements(ctx: MigrationContext): string[];
}
