import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { formatNumber, formatTable, percentile } from './suite';

describe('formatTable', () => {
  it('aligns columns: numbers to the right, text to the left, a rule under the header', () => {
    const text = formatTable(
      ['offered/s', 'p99 ms', 'verdict'],
      [
        [1_000, 12.5, 'kept up'],
        [20_000, 3_400, 'saturated'],
      ],
    );
    assert.deepEqual(text.split('\n'), [
      '  offered/s  p99 ms  verdict',
      '  ---------  ------  ---------',
      '      1,000    12.5  kept up',
      '     20,000   3,400  saturated',
    ]);
  });

  it('right-aligns formatted numbers too, with "-" for none', () => {
    const lines = formatTable(
      ['name', 'value'],
      [
        ['a', '1,234.5'],
        ['bb', '-'],
      ],
    ).split('\n');
    assert.equal(lines[2], '  a     1,234.5');
    assert.equal(lines[3], '  bb          -');
  });
});

describe('formatNumber', () => {
  it('groups thousands, keeps two decimals and shows NaN as "-"', () => {
    assert.equal(formatNumber(1234567), '1,234,567');
    assert.equal(formatNumber(3.14159), '3.14');
    assert.equal(formatNumber(Number.NaN), '-');
  });
});

describe('percentile', () => {
  it('is nearest rank', () => {
    assert.equal(percentile([1, 2, 3, 4], 50), 2);
    assert.equal(percentile([1, 2, 3, 4], 100), 4);
  });
});
