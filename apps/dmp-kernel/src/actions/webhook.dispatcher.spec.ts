import { MetricsRegistry } from '@dmp/observability';
import type { PlannedWebhook } from '@dmp/rules';
import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { loadKernelConfig, type KernelConfig } from '../config';
import { WebhookDispatcher, type WebhookResult } from './webhook.dispatcher';

function config(allowNetworks: string[]): KernelConfig {
  const base = loadKernelConfig({ KERNEL_WEBHOOK_MAX_RETRIES: '2', KERNEL_WEBHOOK_RETRY_BASE_MS: '10' });
  const webhook = { ...base.rules.webhook, allowNetworks }; // KERNEL_WEBHOOK_ALLOW_NETWORKS
  return { ...base, rules: { ...base.rules, webhook } };
}

const webhook = (url: string): PlannedWebhook => ({
  kind: 'webhook',
  ruleId: 'r1',
  trigger: 'match',
  deviceId: 'd1',
  deliveryId: 'whk-1',
  url,
  headers: {},
  payload: {
    event: 'rule.match',
    deliveryId: 'whk-1',
    ruleId: 'r1',
    ruleName: 'r1',
    deviceId: 'd1',
    tenantId: '',
    productId: '',
    siteId: '',
    ts: 1,
    messageId: 'm1',
    alarm: null,
    values: {},
    params: null,
    rulesetVersion: 'v1',
  },
});

describe('WebhookDispatcher egress policy', () => {
  let server: Server;
  let url = '';
  let received = 0;

  before(async () => {
    server = createServer((_req, res) => {
      received += 1;
      res.end();
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/hook`;
  });
  after(() => new Promise<void>((resolve) => server.close(() => resolve())));

  async function deliver(allowNetworks: string[]): Promise<{ result: WebhookResult; counted: number }> {
    const metrics = new MetricsRegistry('dmp-kernel-test');
    const dispatcher = new WebhookDispatcher(config(allowNetworks), metrics);
    const result = await new Promise<WebhookResult>((resolve) => dispatcher.enqueue(webhook(url), resolve));
    await dispatcher.drain();
    const counter = await metrics.registry.getSingleMetric('dmp_kernel_webhook_total')?.get();
    const counted = counter?.values.find((v) => v.labels.result === result)?.value ?? 0;
    return { result, counted };
  }

  it('refuses a webhook to loopback by default: counted, not retried, the receiver never reached', async () => {
    const seen = received;
    assert.deepEqual(await deliver([]), { result: 'refused', counted: 1 });
    assert.equal(received, seen);
  });

  it('delivers to loopback when the configuration allows it', async () => {
    const seen = received;
    assert.deepEqual(await deliver(['127.0.0.1/32']), { result: 'ok', counted: 1 });
    assert.equal(received, seen + 1);
  });
});

describe('WebhookDispatcher.maxDeliveryMs', () => {
  it('outlasts a delivery whose receiver answers 503 with Retry-After up to the retry cap', async () => {
    let attempts = 0;
    const server = createServer((_req, res) => {
      attempts += 1;
      if (attempts <= 2) res.writeHead(503, { 'retry-after': '1' }).end();
      else res.end();
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    try {
      const base = loadKernelConfig({
        KERNEL_WEBHOOK_MAX_RETRIES: '2',
        KERNEL_WEBHOOK_RETRY_BASE_MS: '10',
        KERNEL_WEBHOOK_RETRY_MAX_MS: '1000',
        KERNEL_WEBHOOK_TIMEOUT_MS: '500',
        KERNEL_WEBHOOK_ALLOW_NETWORKS: '127.0.0.1/32',
      });
      const dispatcher = new WebhookDispatcher(base, new MetricsRegistry('dmp-kernel-test'));
      const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/hook`;
      const started = performance.now();
      const result = await new Promise<WebhookResult>((resolve) => dispatcher.enqueue(webhook(url), resolve));
      const took = performance.now() - started;
      await dispatcher.drain();
      // Two Retry-After waits of 1 s (the cap): the outbox lease taken from maxDeliveryMs must cover them.
      assert.deepEqual({ result, attempts }, { result: 'ok', attempts: 3 });
      assert.ok(took >= 2_000, `took ${took} ms`);
      assert.ok(dispatcher.maxDeliveryMs >= took, `maxDeliveryMs ${dispatcher.maxDeliveryMs} < ${took} ms`);
    } finally {
      await new Promise<void>((resolve) => server.close(() => resolve()));
    }
  });
});
