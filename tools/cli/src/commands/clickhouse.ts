import { ClickHouseRepository } from '@dmp/clickhouse';
import { clickhouseSection, loadConfig } from '@dmp/config';
import type { Command } from 'commander';

/** `--clickhouse-url` and `--database` override CLICKHOUSE_URL and CLICKHOUSE_DATABASE. */
export interface ClickHouseOptions {
  clickhouseUrl?: string;
  database?: string;
}

export const withClickHouseOptions = (command: Command): Command =>
  command
    .option('--clickhouse-url <url>', 'default CLICKHOUSE_URL')
    .option('--database <name>', 'default CLICKHOUSE_DATABASE');

/** Runs `run` with a repository of CLICKHOUSE_* (and the options), closed afterwards. */
export async function withClickHouse<T>(
  options: ClickHouseOptions,
  run: (clickhouse: ClickHouseRepository) => Promise<T>,
): Promise<T> {
  const env = loadConfig({ clickhouse: clickhouseSection }).clickhouse;
  const clickhouse = new ClickHouseRepository({
    ...env,
    ...(options.clickhouseUrl ? { url: options.clickhouseUrl } : {}),
    ...(options.database ? { database: options.database } : {}),
  });
  try {
    return await run(clickhouse);
  } finally {
    await clickhouse.close();
  }
}
