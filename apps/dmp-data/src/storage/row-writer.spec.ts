import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { ClickHouseRepository } from '@dmp/clickhouse';
import { DmpError, StorageErrorCode } from '@dmp/contracts';
import type { Link } from '@opentelemetry/api';
import { MAX_BATCH_LINKS } from './batch-writer';
import { ClickHouseRowWriter, type RowWriterOptions } from './row-writer';

const batch = { maxRows: 200, maxWaitMs: 10_000, maxQueueRows: 1_000, retryBaseMs: 5, retryMaxMs: 50 };
const link = (i: number): Link => ({
  context: { traceId: i.toString(16).padStart(32, '0'), spanId: '1'.padStart(16, '0'), traceFlags: 1 },
});
// The writer hands its ClickHouseRepository to `insert` untouched; these tests never reach a server.
const clickhouse = {} as ClickHouseRepository;

function writer(insert: RowWriterOptions<number>['insert']) {
  return new ClickHouseRowWriter<number>(clickhouse, {
    name: 'TestWriter',
    items: 'number(s)',
    refused: 'dropped',
    batch,
    insert,
  });
}

describe('ClickHouseRowWriter', () => {
  it('inserts the stored items as one batch, with their producers as links (at most MAX_BATCH_LINKS)', async () => {
    const batches: { items: number[]; links: number }[] = [];
    const rows = writer(async (_ch, items, links) => {
      batches.push({ items: [...items], links: links.length });
    });
    const stored = Array.from({ length: 150 }, (_, i) =>
      rows.store(i, i % 2 === 0 || i > 20 ? link(i + 1) : undefined),
    );
    rows.flushEagerly();
    await Promise.all(stored);
    await rows.close();
    assert.deepEqual(
      batches.flatMap((b) => b.items),
      Array.from({ length: 150 }, (_, i) => i),
    );
    assert.ok(batches.every((b) => b.links <= MAX_BATCH_LINKS));
    assert.equal(batches[0]?.links, Math.min(MAX_BATCH_LINKS, 11 + 129));
  });

  it('rejects only the rows ClickHouse refuses, as not retryable', async () => {
    const rows = writer(async (_ch, items) => {
      if (items.includes(2)) throw new Error('Code: 27, e.displayText() = DB::Exception: Cannot parse input');
    });
    const results = await Promise.allSettled([1, 2, 3].map((i) => rows.store(i)).concat(rows.close()));
    assert.deepEqual(
      results.slice(0, 3).map((r) => r.status),
      ['fulfilled', 'rejected', 'fulfilled'],
    );
    const refused = (results[1] as PromiseRejectedResult).reason as DmpError;
    assert.equal(refused.code, StorageErrorCode.Unstorable);
    assert.equal(refused.retryable, false);
  });
});
