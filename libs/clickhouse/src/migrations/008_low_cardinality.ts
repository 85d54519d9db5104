import { ALARM_EVENTS_TABLE, ALARMS_TABLE, DEAD_LETTERS_TABLE } from '@dmp/contracts';
import type { Migration } from './migration';

/** Columns of few distinct values (metric names, enrichment ids, rule ids, reason codes), per table. */
const LOW_CARDINALITY: Record<
  string,
  Record<string, 'LowCardinality(String)' | 'Array(LowCardinality(String))'>
> = {
  telemetry_raw: {
    tenant_id: 'LowCardinality(String)',
    product_id: 'LowCardinality(String)',
    site_id: 'LowCardinality(String)',
    metric_names: 'Array(LowCardinality(String))',
    text_names: 'Array(LowCardinality(String))',
  },
  telemetry_latest: {
    metric: 'LowCardinality(String)',
    tenant_id: 'LowCardinality(String)',
    product_id: 'LowCardinality(String)',
    site_id: 'LowCardinality(String)',
  },
  telemetry_1m: {
    metric: 'LowCardinality(String)',
    tenant_id: 'LowCardinality(String)',
    product_id: 'LowCardinality(String)',
    site_id: 'LowCardinality(String)',
  },
  telemetry_1m_source: {
    tenant_id: 'LowCardinality(String)',
    product_id: 'LowCardinality(String)',
    site_id: 'LowCardinality(String)',
    metric_names: 'Array(LowCardinality(String))',
  },
  [DEAD_LETTERS_TABLE]: {
    source: 'LowCardinality(String)',
    source_instance: 'LowCardinality(String)',
    error_code: 'LowCardinality(String)',
    content_type: 'LowCardinality(String)',
  },
  [ALARMS_TABLE]: {
    rule_id: 'LowCardinality(String)',
    rule_name: 'LowCardinality(String)',
    tenant_id: 'LowCardinality(String)',
    product_id: 'LowCardinality(String)',
    site_id: 'LowCardinality(String)',
    ruleset_version: 'LowCardinality(String)',
  },
  [ALARM_EVENTS_TABLE]: {
    rule_id: 'LowCardinality(String)',
    tenant_id: 'LowCardinality(String)',
    product_id: 'LowCardinality(String)',
    site_id: 'LowCardinality(String)',
    ruleset_version: 'LowCardinality(String)',
  },
};

/**
 * Servers from 19.3 store the repetitive String columns as `LowCardinality(String)`: a dictionary per
 * part and small integer codes per row — smaller on disk, faster to filter and group by. Values,
 * JSONEachRow inserts and every query stay the same; key columns (`metric`, `error_code`, `rule_id`)
 * keep their sort order, so the change is allowed on them. On a table with data this is a mutation
 * that rewrites those columns once, in the background. 18.16 (experimental LowCardinality only) waits
 * for an upgrade: the migration runs at the first start-up on a server that has it.
 */
export const lowCardinality: Migration = {
  version: 8,
  name: 'low_cardinality',
  requires: 'lowCardinality',
  statements: () =>
    Object.entries(LOW_CARDINALITY).map(
      ([table, columns]) =>
        `ALTER TABLE ${table}\n${Object.entries(columns)
          .map(([column, type]) => `    MODIFY COLUMN ${column} ${type}`)
          .join(',\n')}`,
    ),
};
