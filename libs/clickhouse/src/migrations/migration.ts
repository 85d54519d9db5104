import type { ServerFeature, ServerVersion } from '../server-version';

export interface MigrationContext {
  database: string;
  server: ServerVersion;
}

/**
 * One schema step. Every statement must be idempotent (`IF NOT EXISTS`…): a migration interrupted
 * between statements, or applied by two instances starting at once, is simply run again.
 * Statements must run on ClickHouse 18.16 or be gated on `ctx.server` — or the whole migration on
 * `requires`.
 */
export interface Migration {
  version: number;
  name: string;
  /**
   * A server feature the migration needs (`serverFeatures`). On a server without it the migration
   * waits: it is neither run nor recorded, and runs at the first start-up on a server that has it.
   * Only for steps later ones do not depend on (types, aliases).
   */
  requires?: ServerFeature;
  statements(ctx: MigrationContext): string[];
}
