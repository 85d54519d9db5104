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
