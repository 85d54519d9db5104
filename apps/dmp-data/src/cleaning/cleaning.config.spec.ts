import { ConfigError } from '@dmp/config';
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { loadDataConfig } from '../config';

/** The problems loadDataConfig reports for `env` (none: the config it loaded). */
function problemsOf(env: Record<string, string>): string[] {
  try {
    loadDataConfig(env);
    return [];
  } catch (error) {
    assert.ok(error instanceof ConfigError, String(error));
    return error.problems;
  }
}

describe('cleaning config (DATA_CLEAN_*)', () => {
  it('defaults: 5 min ahead, a year old, |value| ≤ 1e15, no metric ranges', () => {
    const { cleaning } = loadDataConfig({});
    assert.equal(cleaning.maxFutureMs, 300_000);
    assert.equal(cleaning.maxAgeMs, 365 * 86_400_000);
    assert.equal(cleaning.maxAbsValue, 1e15);
    assert.equal(cleaning.ranges.size, 0);
  });

  it('reads the limits and the metric ranges, open bounds as null', () => {
    const { cleaning } = loadDataConfig({
      DATA_CLEAN_MAX_FUTURE_MS: '60000',
      DATA_CLEAN_MAX_AGE_MS: '0',
      DATA_CLEAN_MAX_ABS_VALUE: '1e12',
      DATA_CLEAN_METRIC_RANGES: ' {"temp": [-40, 85.5], "level": [0, null], "same": [3, 3]} ',
    });
    assert.equal(cleaning.maxFutureMs, 60_000);
    assert.equal(cleaning.maxAgeMs, 0);
    assert.equal(cleaning.maxAbsValue, 1e12);
    assert.deepEqual(
      [...cleaning.ranges],
      [
        ['temp', { min: -40, max: 85.5 }],
        ['level', { min: 0, max: null }],
        ['same', { min: 3, max: 3 }],
      ],
    );
    assert.equal(loadDataConfig({ DATA_CLEAN_METRIC_RANGES: '' }).cleaning.ranges.size, 0);
  });

  it('refuses malformed DATA_CLEAN_METRIC_RANGES with an error naming the variable', () => {
    const cases: [string, RegExp][] = [
      [
        '{temp: [0, 1]}',
        /^DATA_CLEAN_METRIC_RANGES: not JSON \(.*\); expected e\.g\. \{"temp": \[-40, 85\]\}$/,
      ],
      ['[[0, 1]]', /^DATA_CLEAN_METRIC_RANGES: /],
      ['{"temp": [10, 0]}', /^DATA_CLEAN_METRIC_RANGES\.temp: min must not exceed max$/],
      ['{"temp": [0]}', /^DATA_CLEAN_METRIC_RANGES\.temp: /],
      ['{"temp": {"min": 0}}', /^DATA_CLEAN_METRIC_RANGES\.temp: /],
      ['{"temp": ["0", 1]}', /^DATA_CLEAN_METRIC_RANGES\.temp\.0: /],
      ['{"a/b": [0, 1]}', /^DATA_CLEAN_METRIC_RANGES\.a\/b: not a valid metric name \(/],
    ];
    for (const [value, problem] of cases) {
      const problems = problemsOf({ DATA_CLEAN_METRIC_RANGES: value });
      assert.equal(problems.length, 1, `${value}: ${problems.join(' | ')}`);
      assert.match(problems[0], problem);
    }
  });

  it('refuses negative or non-numeric limits, naming each variable', () => {
    const problems = problemsOf({
      DATA_CLEAN_MAX_FUTURE_MS: '-1',
      DATA_CLEAN_MAX_AGE_MS: 'a year',
      DATA_CLEAN_MAX_ABS_VALUE: '-5',
    });
    assert.deepEqual(
      problems.map((p) => p.split(':')[0]),
      ['DATA_CLEAN_MAX_FUTURE_MS', 'DATA_CLEAN_MAX_AGE_MS', 'DATA_CLEAN_MAX_ABS_VALUE'],
    );
  });
});
