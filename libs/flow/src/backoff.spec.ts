import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { MAX_BACKOFF_EXPONENT, backoffDelay } from './backoff';

describe('backoffDelay', () => {
  const options = { baseMs: 100, maxMs: 5_000 };

  it('waits the base before the first retry and doubles after each', () => {
    const delays = [1, 2, 3, 4, 5, 6].map((attempt) => backoffDelay(attempt, options));
    assert.deepEqual(delays, [100, 200, 400, 800, 1_600, 3_200]);
  });

  it('never waits longer than the cap', () => {
    for (let attempt = 7; attempt <= 200; attempt++) assert.equal(backoffDelay(attempt, options), 5_000);
  });

  it('caps the exponent, so huge attempts stay finite even with a tiny base or a huge cap', () => {
    for (const attempt of [MAX_BACKOFF_EXPONENT + 1, 1_100, 1e9, Number.MAX_SAFE_INTEGER, Infinity]) {
      const delay = backoffDelay(attempt, { baseMs: 1, maxMs: Number.MAX_VALUE });
      assert.equal(delay, 2 ** MAX_BACKOFF_EXPONENT, `attempt ${attempt}`);
      assert.equal(backoffDelay(attempt, { baseMs: 0, maxMs: 1_000 }), 0, `base 0, attempt ${attempt}`);
    }
  });

  it('counts attempts below 1, fractions and NaN as the nearest sensible attempt', () => {
    assert.equal(backoffDelay(0, options), 100);
    assert.equal(backoffDelay(-3, options), 100);
    assert.equal(backoffDelay(Number.NaN, options), 100);
    assert.equal(backoffDelay(2.7, options), 200);
  });

  it('keeps a jittered delay between (1 − jitter) × d and d, and so within the cap', () => {
    for (const jitter of [0.2, 0.5, 1]) {
      for (let attempt = 1; attempt <= 12; attempt++) {
        const d = backoffDelay(attempt, options);
        assert.equal(
          backoffDelay(attempt, { ...options, jitter }, () => 0),
          d,
          'random 0: the full delay',
        );
        const shortest = backoffDelay(attempt, { ...options, jitter }, () => 1 - Number.EPSILON);
        assert.ok(
          Math.abs(shortest - (1 - jitter) * d) < 1e-9,
          `jitter ${jitter}, attempt ${attempt}: ${shortest}`,
        );
        for (let i = 0; i < 50; i++) {
          const delay = backoffDelay(attempt, { ...options, jitter });
          assert.ok(delay <= d && delay <= options.maxMs, `${delay} > ${d}`);
          assert.ok(delay >= (1 - jitter) * d, `${delay} < ${(1 - jitter) * d}`);
        }
      }
    }
  });

  it('spreads a jittered delay over its whole range', () => {
    const draws = Array.from({ length: 2_000 }, () => backoffDelay(3, { ...options, jitter: 0.5 }));
    // d = 400: uniform over (200, 400]; both quarters at the ends are hit.
    assert.ok(draws.some((delay) => delay < 250));
    assert.ok(draws.some((delay) => delay > 350));
  });

  it('treats jitter outside 0..1 as its nearest bound', () => {
    assert.equal(
      backoffDelay(2, { ...options, jitter: -1 }, () => 0.9),
      200,
    );
    assert.equal(
      backoffDelay(2, { ...options, jitter: 3 }, () => 0.5),
      100,
    );
  });
});
