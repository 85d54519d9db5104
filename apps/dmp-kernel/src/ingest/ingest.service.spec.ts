import {
  decodeTelemetryBody,
  type DeviceMetadata,
  DmpError,
  type KindName,
  type TelemetryMessage,
} from '@dmp/contracts';
import type { OutgoingMessage, RocketMqProducer } from '@dmp/messaging';
import { MetricsRegistry } from '@dmp/observability';
import { EMPTY_PRODUCTS } from '@dmp/rules';
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { loadKernelConfig } from '../config';
import type { DeviceMetadataCache } from '../enrichment/device-metadata.cache';
import { Normalizer } from '../normalization/normalizer';
import { TelemetryPublisher } from '../publishing/telemetry.publisher';
import type { RuleSetHolder } from '../rules/rule-set.holder';
import { IngestService, LaneFullError } from './ingest.service';

/**
 * The Ingest service with its real publisher and packer, over a RocketMQ producer whose sends the test
 * settles (the kernel e2e covers the real broker): what a call answers, and what reaches RocketMQ.
 */
function kernel(env: Record<string, string>) {
  const config = loadKernelConfig({ KERNEL_PACK_SHARDS: '1', KERNEL_PACK_LINGER_MS: '0', ...env });
  const metrics = new MetricsRegistry('dmp-kernel-test');
  const sends: { ids: string[]; settle: (error?: Error) => void }[] = [];
  const producer = {
    send: (message: OutgoingMessage) =>
      new Promise((resolve, reject) => {
        const ids = decodeTelemetryBody(message.body, message.properties ?? {}).map(
          (entry) => (entry.telemetry as { messageId: string }).messageId,
        );
        sends.push({
          ids,
          settle: (error) => (error ? reject(error) : resolve({ messageId: `rmq-${sends.length}` })),
        });
      }),
  } as unknown as RocketMqProducer;
  const metadata = {
    getMany: async () => new Map<string, DeviceMetadata>(),
  } as unknown as DeviceMetadataCache;
  const rules = { current: { products: EMPTY_PRODUCTS } } as unknown as RuleSetHolder;
  const publisher = new TelemetryPublisher(producer, config, metrics);
  const service = new IngestService(new Normalizer(metadata, rules, metrics), publisher, metrics, config);
  /** What waits in the one lane of telemetry (one shard). */
  const waiting = () => publisher.fullLane([publisher.laneOf('telemetry', 'any')]);
  const outcomes = async (outcome: string) => {
    const metric = await metrics.registry.getSingleMetric('dmp_kernel_messages_total')!.get();
    return metric.values.filter((v) => v.labels.outcome === outcome).reduce((sum, v) => sum + v.value, 0);
  };
  return { service, sends, publisher, waiting, outcomes };
}

/** Turns of the event loop until `condition` holds (the packer and the fake producer need no timers). */
async function until(what: string, condition: () => boolean) {
  for (let turn = 0; turn < 1_000; turn++) {
    if (condition()) return;
    await new Promise((resolve) => setImmediate(resolve));
  }
  assert.fail(`never: ${what}`);
}

const message = (deviceId: string, i: number, kind: KindName = 'KIND_TELEMETRY'): TelemetryMessage => ({
  deviceId,
  messageId: `${deviceId}-m${i}`,
  kind,
  ts: Date.now() - 1_000 + i,
  seq: i + 1,
  metrics: { temp: { value: 'number', number: 20 + i } },
  receivedAt: Date.now(),
  traceparent: '',
  tracestate: '',
});

/** Settles sends as they come, in order, failing those `fail` picks. */
async function settleSends(
  sends: ReturnType<typeof kernel>['sends'],
  until: Promise<unknown>,
  fail: (n: number) => boolean,
) {
  let settled = 0;
  let done = false;
  void until.finally(() => (done = true));
  while (!done) {
    await new Promise((resolve) => setImmediate(resolve));
    while (settled < sends.length) {
      const n = settled++;
      sends[n].settle(fail(n) ? new DmpError('DMP_ERR_ROCKETMQ_SEND', 'proxy away', true) : undefined);
    }
  }
}

describe('IngestService', () => {
  it("hands a call's messages off at once and stores a device's messages in order, in packs", async () => {
    const { service, sends } = kernel({ KERNEL_PACK_MAX_MESSAGES: '2' });
    const batch = [message('dev-d', 1), message('dev-e', 1), message('dev-d', 2), message('dev-d', 3)];
    const call = service.ingest(batch);
    await settleSends(sends, call, () => false);
    const outcomes = await call;
    assert.deepEqual(
      outcomes.map((o) => o.accepted),
      [true, true, true, true],
    );
    assert.deepEqual(
      sends.map((s) => s.ids),
      [
        ['dev-d-m1', 'dev-e-m1'],
        ['dev-d-m2', 'dev-d-m3'],
      ],
    );
  });

  it("answers held, and sends nothing, for a device's messages behind a failed pack; other devices go on", async () => {
    const { service, sends } = kernel({ KERNEL_PACK_MAX_MESSAGES: '1' });
    const batch = [
      message('dev-d', 1),
      message('dev-e', 1),
      message('dev-d', 2),
      message('dev-d', 3),
      message('dev-e', 2),
    ];
    const call = service.ingest(batch);
    await settleSends(sends, call, (n) => n === 0);
    const outcomes = await call;
    assert.deepEqual(
      outcomes.map((o) => [o.messageId, o.accepted, o.retryable, o.errorCode]),
      [
        ['dev-d-m1', false, true, 'DMP_ERR_ROCKETMQ_SEND'],
        ['dev-e-m1', true, false, ''],
        ['dev-d-m2', false, true, 'DMP_ERR_PRECEDING_FAILED'],
        ['dev-d-m3', false, true, 'DMP_ERR_PRECEDING_FAILED'],
        ['dev-e-m2', true, false, ''],
      ],
    );
    assert.deepEqual(
      sends.map((s) => s.ids),
      [['dev-d-m1'], ['dev-e-m1'], ['dev-e-m2']],
      'nothing of dev-d after its failed message',
    );
  });

  it('refuses a whole call, taking nothing of it, while a lane it would add to is full; its retry goes through', async () => {
    const { service, sends, publisher, outcomes } = kernel({ KERNEL_PACK_LANE_MAX_MESSAGES: '2' });
    const lane = publisher.laneOf('telemetry', 'dev-a');
    const first = service.ingest([message('dev-a', 1)]);
    await until('the first pack in flight', () => sends.length === 1);
    const second = service.ingest([message('dev-b', 1), message('dev-b', 2)]);
    await until('the second call waiting in its lane', () => publisher.fullLane([lane]) !== undefined);

    const refused = service.ingest([message('dev-c', 1), message('dev-a', 2)]);
    await assert.rejects(refused, (error: unknown) => {
      assert.ok(error instanceof LaneFullError);
      assert.equal(error.code, 'DMP_ERR_LANE_FULL');
      assert.equal(error.retryable, true);
      assert.match(error.message, /lane .* is full \(2 messages/);
      return true;
    });
    assert.equal(await outcomes('full'), 2);

    sends[0].settle();
    await until('the second pack in flight', () => sends.length === 2);
    sends[1].settle();
    await Promise.all([first, second]);
    // The caller's retry, once the lane has room.
    const retried = service.ingest([message('dev-c', 1), message('dev-a', 2)]);
    await settleSends(sends, retried, () => false);
    assert.deepEqual(
      (await retried).map((o) => o.accepted),
      [true, true],
    );
    assert.deepEqual(
      sends.map((s) => s.ids),
      [['dev-a-m1'], ['dev-b-m1', 'dev-b-m2'], ['dev-c-m1', 'dev-a-m2']],
      'each message sent once: nothing of the refused call',
    );
  });

  it('sends nothing of a call cancelled before its messages were handed off or while they wait', async () => {
    // The bound only shows when the call's two messages wait in the lane.
    const { service, sends, waiting, outcomes } = kernel({ KERNEL_PACK_LANE_MAX_MESSAGES: '2' });
    const first = service.ingest([message('dev-a', 1)]);
    await until('the first pack in flight', () => sends.length === 1);
    const call = new AbortController();
    const cancelled = service.ingest([message('dev-a', 2), message('dev-b', 1)], call.signal);
    await until('the call waiting in its lane', () => waiting()?.items === 2);
    call.abort('cancelled');
    const late = service.ingest([message('dev-c', 1)], AbortSignal.abort('deadline'));
    for (const outcome of [...(await cancelled), ...(await late)])
      assert.deepEqual(
        [outcome.accepted, outcome.retryable, outcome.errorCode],
        [false, true, 'DMP_ERR_CALL_CANCELLED'],
      );
    assert.equal(await outcomes('cancelled'), 3);

    sends[0].settle();
    assert.equal((await first)[0].accepted, true);
    const next = service.ingest([message('dev-d', 1)]);
    await settleSends(sends, next, () => false);
    assert.deepEqual(
      sends.map((s) => s.ids),
      [['dev-a-m1'], ['dev-d-m1']],
      'nothing of the cancelled calls was sent',
    );
  });
});
