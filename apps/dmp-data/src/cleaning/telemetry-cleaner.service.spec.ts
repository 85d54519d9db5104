import { cleaningSection } from '@dmp/config';
import { CleanCode, CleaningErrorCode, decodeDeadLetterBatch, DmpError } from '@dmp/contracts';
import type { OutgoingMessage, SendResult } from '@dmp/messaging';
import { MetricsRegistry } from '@dmp/observability';
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { TelemetryCleaner } from './telemetry-cleaner.service';

const NOW = Date.UTC(2026, 10, 21, 10, 0, 0);
const SOURCE = {
  topic: 'dmp_telemetry_event',
  messageId: '01ABC',
  messageGroup: 'shard-1',
  deliveryAttempt: 1,
};

const entry = (metrics: Record<string, unknown>, extra: Record<string, unknown> = {}) => ({
  deviceId: 'dev-001',
  messageId: 'm-1',
  kind: 'telemetry',
  ts: NOW - 1_000,
  metrics,
  receivedAt: NOW - 900,
  ...extra,
});

/**
 * The cleaner's side of RocketMQ: a producer whose sends the test settles (what a send does on the
 * wire — the batch format, its rows — is covered by cleaning-dead-letter.spec.ts).
 */
function producer() {
  const sends: { message: OutgoingMessage; settle: (error?: Error) => void }[] = [];
  return {
    sends,
    send: (message: OutgoingMessage) =>
      new Promise<SendResult>((resolve, reject) => {
        sends.push({
          message,
          settle: (error) => (error ? reject(error) : resolve({ messageId: `dl-${sends.length}` })),
        });
      }),
  };
}

function cleaner(p = producer(), env: Record<string, string> = {}) {
  const metrics = new MetricsRegistry('dmp-data-test');
  const service = new TelemetryCleaner({
    limits: cleaningSection.parse({ DATA_CLEAN_METRIC_RANGES: '{"hum": [0, 100]}', ...env }),
    deadLetterTopic: 'dmp_dead_letter',
    instance: 'dmp_data',
    producer: p,
    metrics,
    now: () => NOW,
  });
  const cleaned = async () => {
    const metric = await metrics.registry.getSingleMetric('dmp_data_cleaned_total')!.get();
    return Object.fromEntries(metric.values.map((v) => [String(v.labels.reason), v.value]));
  };
  return { service, p, cleaned };
}

/** Whether `promise` settled within a few turns of the event loop. */
async function settled(promise: Promise<unknown>): Promise<boolean> {
  let done = false;
  promise.then(
    () => (done = true),
    () => (done = true),
  );
  await new Promise((resolve) => setImmediate(resolve));
  return done;
}

describe('TelemetryCleaner', () => {
  it('returns a clean entry as is, sending nothing', async () => {
    const { service, p, cleaned } = cleaner();
    const telemetry = await service.clean(entry({ temp: 21 }), SOURCE);
    assert.deepEqual(telemetry?.metrics, { temp: 21 });
    assert.equal(p.sends.length, 0);
    const counts = await cleaned();
    assert.deepEqual(
      Object.keys(counts).sort(),
      Object.values(CleanCode).sort(),
      'every reason at 0 from the start',
    );
    assert.ok(Object.values(counts).every((v) => v === 0));
  });

  it('resolves to the good metrics only once the dead letter of the removed ones is stored', async () => {
    const { service, p, cleaned } = cleaner();
    const pending = service.clean(entry({ temp: Infinity, hum: 140, door: true }), SOURCE);
    assert.equal(await settled(pending), false, 'waits for the dead letter');
    assert.equal(p.sends.length, 1);
    const [entryOf] = decodeDeadLetterBatch(p.sends[0].message.body);
    assert.equal(entryOf.properties.dmp_error_code, CleanCode.NotFinite);
    const payload = JSON.parse(entryOf.payload.toString()) as { metrics: Record<string, unknown> };
    assert.equal(payload.metrics.temp, Infinity, 'the payload keeps Infinity (as 1e999)');
    assert.equal((await cleaned())[CleanCode.NotFinite], 0, 'not counted before it is stored');

    p.sends[0].settle();
    const telemetry = await pending;
    assert.deepEqual(telemetry?.metrics, { door: true });
    const counts = await cleaned();
    assert.equal(counts[CleanCode.NotFinite], 1);
    assert.equal(counts[CleanCode.OutOfRange], 1);
  });

  it('resolves to undefined for a refused entry, after its dead letter is stored; counts the message once', async () => {
    const { service, p, cleaned } = cleaner();
    const pending = service.clean(entry({ temp: 1 }, { ts: NOW + 3_600_000 }), SOURCE);
    assert.equal(await settled(pending), false);
    p.sends[0].settle();
    assert.equal(await pending, undefined);
    assert.equal((await cleaned())[CleanCode.TsFuture], 1);

    const none = service.clean(entry({ a: NaN, b: -Infinity }), SOURCE);
    await settled(none);
    p.sends[1].settle();
    assert.equal(await none, undefined);
    const counts = await cleaned();
    assert.equal(counts[CleanCode.NoMetricsLeft], 1);
    assert.equal(counts[CleanCode.NotFinite], 0, 'a refused message counts under its own reason only');
  });

  it('throws a retryable DmpError when the dead letter cannot be sent, counting nothing', async () => {
    const { service, p, cleaned } = cleaner();
    const pending = service.clean(entry({ temp: Infinity, hum: 1 }), SOURCE);
    await settled(pending);
    p.sends[0].settle(new DmpError('DMP_ERR_ROCKETMQ_SEND', 'proxy away', true));
    await assert.rejects(pending, (error: unknown) => {
      assert.ok(error instanceof DmpError);
      assert.equal(error.code, CleaningErrorCode.DeadLetterFailed);
      assert.equal(error.retryable, true);
      assert.match(error.message, /dmp_telemetry_event message 01ABC .* could not be sent: proxy away/);
      return true;
    });
    assert.equal((await cleaned())[CleanCode.NotFinite], 0);
    // Anything else than a DmpError from the producer is as retryable.
    const again = service.clean(entry({ temp: Infinity, hum: 1 }), SOURCE);
    await settled(again);
    p.sends[1].settle(new Error('socket hang up'));
    await assert.rejects(again, { code: CleaningErrorCode.DeadLetterFailed, retryable: true });
  });

  it('throws a non-retryable DmpError when RocketMQ refuses the dead letter for good', async () => {
    const { service, p } = cleaner();
    const pending = service.clean(entry({ temp: Infinity, hum: 1 }), SOURCE);
    await settled(pending);
    p.sends[0].settle(new DmpError('DMP_ERR_ROCKETMQ_REJECTED', 'too large', false));
    await assert.rejects(pending, { code: CleaningErrorCode.DeadLetterRefused, retryable: false });
  });

  it('packs the dead letters of concurrent entries while a send is busy', async () => {
    const { service, p, cleaned } = cleaner();
    const all = Array.from({ length: 20 }, (_, i) =>
      service.clean(entry({ temp: Infinity, hum: 1 }, { messageId: `m-${i}` }), SOURCE),
    );
    await settled(Promise.all(all));
    assert.equal(p.sends.length, 4, 'four sends in flight at most');
    for (const send of p.sends.splice(0)) send.settle();
    await settled(Promise.all(all));
    assert.equal(p.sends.length, 1, 'the 16 that waited share one send');
    assert.equal(decodeDeadLetterBatch(p.sends[0].message.body).length, 16);
    p.sends[0].settle();
    const results = await Promise.all(all);
    assert.ok(results.every((t) => t?.metrics.hum === 1));
    assert.equal((await cleaned())[CleanCode.NotFinite], 20);
  });
});
