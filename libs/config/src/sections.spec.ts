import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ConfigError, loadConfig } from './env';
import { clickhouseSection } from './sections';

const load = (env: Record<string, string | undefined>) =>
  loadConfig({ clickhouse: clickhouseSection }, env).clickhouse;

describe('CLICKHOUSE_CLUSTER', () => {
  it('is off unless set: one server', () => {
    assert.equal(load({}).cluster, undefined);
    assert.equal(load({ CLICKHOUSE_CLUSTER: 'dmp' }).cluster, 'dmp');
  });

  it('refuses an empty value or a name the SQL cannot carry as it is, by name', () => {
    for (const value of ['', 'a-b', 'dmp;DROP', '1x']) {
      assert.throws(
        () => load({ CLICKHOUSE_CLUSTER: value }),
        (error: unknown) =>
          error instanceof ConfigError && error.problems.some((p) => p.startsWith('CLICKHOUSE_CLUSTER')),
        value,
      );
    }
  });
});
