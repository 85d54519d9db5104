import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { AGE_BUCKETS, LATENCY_BUCKETS } from './metrics.registry';

describe('histogram buckets', () => {
  for (const [name, buckets, maxStep] of [
    ['LATENCY_BUCKETS', LATENCY_BUCKETS, 2.5],
    ['AGE_BUCKETS', AGE_BUCKETS, 2.5],
  ] as const)
    it(`${name} rise with no step larger than ${maxStep}×`, () => {
      for (let i = 1; i < buckets.length; i++) {
        const step = buckets[i] / buckets[i - 1];
        assert.ok(step > 1 && step <= maxStep, `${buckets[i - 1]} → ${buckets[i]}`);
      }
    });

  it('have the alert thresholds as bounds (a quantile at a bound is exact)', () => {
    for (const threshold of [10, 30, 300]) assert.ok(AGE_BUCKETS.includes(threshold), `${threshold} s`);
    for (const threshold of [1, 5]) assert.ok(LATENCY_BUCKETS.includes(threshold), `${threshold} s`);
  });
});
