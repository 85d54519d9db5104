import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { aggregateDifferences, aggregateOf, explainAggregateSql } from './explain';

describe('explain aggregate: recomputation', () => {
  it('recomputes a minute as the aggregator does: first and last by device time, ties by message id', () => {
    const aggregate = aggregateOf([
      { messageId: 'b', tsMs: 2_000, value: 30 },
      { messageId: 'c', tsMs: 1_000, value: 10 },
      { messageId: 'a', tsMs: 2_000, value: 20 },
    ]);
    assert.deepEqual(aggregate, {
      samples: 3,
      sum: 60,
      min: 10,
      max: 30,
      avg: 20,
      first: 10,
      last: 30, // b after a at the same time
      firstTsMs: 1_000,
      lastTsMs: 2_000,
    });
    assert.equal(aggregateOf([]), undefined);
  });

  it('names the fields where the stored row and the recomputation differ, tolerating float rounding', () => {
    const recomputed = aggregateOf([
      { messageId: 'a', tsMs: 1, value: 0.1 },
      { messageId: 'b', tsMs: 2, value: 0.2 },
      { messageId: 'c', tsMs: 3, value: 5 },
    ])!;
    const stored = aggregateOf([
      { messageId: 'b', tsMs: 2, value: 0.2 },
      { messageId: 'a', tsMs: 1, value: 0.1 },
    ])!;
    assert.deepEqual(aggregateDifferences(recomputed, { ...recomputed, sum: recomputed.sum + 1e-15 }), []);
    assert.deepEqual(
      aggregateDifferences(recomputed, stored).map((d) => d.field),
      ['samples', 'sum', 'max', 'avg', 'last'],
    );
    assert.deepEqual(aggregateDifferences(recomputed, undefined)[0], {
      field: 'samples',
      stored: null,
      recomputed: 3,
    });
    assert.deepEqual(aggregateDifferences(undefined, undefined), []);
  });

  it('reads one minute of one device, quoting what it is given', () => {
    const sql = explainAggregateSql.rows("d'1", 'temp', 1_767_225_600);
    assert.match(sql, /device_id = 'd\\'1'/);
    assert.match(sql, /ts >= toDateTime\(1767225600\) AND ts < toDateTime\(1767225660\)/);
    assert.match(explainAggregateSql.deadLetters('d1', 1_767_225_600), /< 1767225660000\)\)/);
  });
});
