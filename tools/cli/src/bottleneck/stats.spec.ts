import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { quantile, slope, tailMean, trend } from './stats';

describe('bottleneck statistics', () => {
  it('takes nearest-rank quantiles of a sample', () => {
    const samples = Array.from({ length: 100 }, (_, i) => 100 - i); // 100 … 1, unsorted order
    assert.equal(quantile(samples, 0.5), 50);
    assert.equal(quantile(samples, 0.99), 99);
    assert.equal(quantile(samples, 1), 100);
    assert.equal(quantile([7], 0.99), 7);
    assert.equal(quantile([], 0.5), undefined);
  });

  it('measures how a series moved: edges, maximum and slope per minute', () => {
    const rising = Array.from({ length: 10 }, (_, i) => ({ t: 1_000 + i * 6, v: 2 * i }));
    const t = trend(rising)!;
    // The edges are the means of the first and the last fifth (two points each here).
    assert.equal(t.first, 1);
    assert.equal(t.last, 17);
    assert.equal(t.points, 10);
    assert.equal(t.max, 18);
    assert.equal(Math.round(t.slopePerMinute), 20); // 2 per 6 s
    assert.equal(slope([{ t: 0, v: 5 }]), 0);
    assert.equal(trend([{ t: 0, v: NaN }]), undefined);
  });

  it('averages the tail of a range', () => {
    const points = [
      { t: 0, v: 100 },
      { t: 50, v: 100 },
      { t: 85, v: 1 },
      { t: 100, v: 3 },
    ];
    assert.equal(tailMean(points, 0, 100), 2);
    assert.equal(tailMean(points, 0, 100, 0.01), 3);
    assert.equal(tailMean([], 0, 100), undefined);
  });
});
