import { DmpError, decodeTelemetryBody, type DeviceMetadata } from '@dmp/contracts';
import type { OutgoingMessage, RocketMqProducer } from '@dmp/messaging';
import { MetricsRegistry } from '@dmp/observability';
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { loadKernelConfig } from '../config';
import type { DeviceMetadataCache } from '../enrichment/device-metadata.cache';
import { Normalizer } from '../normalization/normalizer';
import { EMPTY_PRODUCTS } from '../normalization/product-model';
import { TelemetryPublisher } from '../publishing/telemetry.publisher';
import type { RuleSetHolder } from '../rules/rule-set.holder';
import { IngestService } from './ingest.service';
import type { TelemetryMessage } from './telemetry.proto-types';

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
  const service = new IngestService(
    new Normalizer(metadata, rules, metrics),
    new TelemetryPublisher(producer, config, metrics),
    metrics,
    config,
  );
  return { service, sends };
}

const message = (deviceId: string, i: number, kind = 'KIND_TELEMETRY'): TelemetryMessage => ({
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
});
