import { ConfigError } from '@dmp/config';
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { loadDataConfig } from '../config';

describe('aggregation config (DATA_AGGREGATION_*)', () => {
  it('holds the lease 30 s by default, renewed every 5 s pass; dmp-data gets a Redis URL for it', () => {
    const config = loadDataConfig({});
    assert.deepEqual([config.data.aggregation.intervalMs, config.data.aggregation.leaseMs], [5_000, 30_000]);
    assert.equal(config.redis.url, 'redis://127.0.0.1:6379');
  });

  it('refuses a lease that would expire between two passes, naming the variable', () => {
    for (const env of [
      { DATA_AGGREGATION_LEASE_MS: '5000' },
      { DATA_AGGREGATION_INTERVAL_MS: '60000', DATA_AGGREGATION_LEASE_MS: '30000' },
    ])
      assert.throws(
        () => loadDataConfig(env),
        (error: unknown) =>
          error instanceof ConfigError &&
          error.problems.some((p) => p.startsWith('DATA_AGGREGATION_LEASE_MS: must be longer than')),
      );
    assert.equal(
      loadDataConfig({ DATA_AGGREGATION_INTERVAL_MS: '1000', DATA_AGGREGATION_LEASE_MS: '4000' }).data
        .aggregation.leaseMs,
      4_000,
    );
  });
});
