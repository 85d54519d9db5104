import { OutboxErrorCode } from '@dmp/contracts';
import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { Agent, request } from 'undici';
import { EgressPolicy } from '../egress/egress-policy';
import { egressConnector, type Resolver } from './egress-connector';

/** A receiver on loopback, the way an attacker would aim a webhook at the kernel's own host. */
describe('egressConnector', () => {
  let server: Server;
  let port = 0;
  let received = 0;

  before(async () => {
    server = createServer((_req, res) => {
      received += 1;
      res.end('ok');
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    port = (server.address() as AddressInfo).port;
  });
  after(() => new Promise<void>((resolve) => server.close(() => resolve())));

  async function post(url: string, policy: EgressPolicy, resolve?: Resolver): Promise<number | string> {
    const agent = new Agent({ connect: egressConnector(policy, { timeout: 2_000 }, resolve) });
    try {
      const response = await request(url, { method: 'POST', dispatcher: agent, body: '{}' });
      await response.body.dump();
      return response.statusCode;
    } catch (error) {
      return (error as { code?: string }).code ?? String(error);
    } finally {
      await agent.close();
    }
  }

  it('refuses a loopback address, literal or resolved, without connecting', async () => {
    const seen = received;
    assert.equal(
      await post(`http://127.0.0.1:${port}/`, EgressPolicy.allowing()),
      OutboxErrorCode.WebhookEgressRefused,
    );
    assert.equal(
      await post(`http://[::ffff:127.0.0.1]:${port}/`, EgressPolicy.allowing()),
      OutboxErrorCode.WebhookEgressRefused,
    );
    assert.equal(
      await post(`http://localhost:${port}/`, EgressPolicy.allowing()),
      OutboxErrorCode.WebhookEgressRefused,
    );
    assert.equal(received, seen, 'the receiver saw no request');
  });

  it('connects where the configuration allows it', async () => {
    const seen = received;
    assert.equal(await post(`http://127.0.0.1:${port}/`, EgressPolicy.allowing(['127.0.0.0/8'])), 200);
    assert.equal(
      await post(`http://localhost:${port}/`, EgressPolicy.allowing(['127.0.0.1/32', '::1/128'])),
      200,
    );
    assert.equal(received, seen + 2);
  });

  it('connects to the address it checked: one resolution, never a second one (DNS rebinding)', async () => {
    const answers = [[{ address: '127.0.0.1', family: 4 }], [{ address: '169.254.169.254', family: 4 }]];
    let lookups = 0;
    const rebinding: Resolver = (_host, _options, callback) =>
      callback(null, answers[Math.min(lookups++, 1)]);
    // The name exists for this resolver only: the connection can only use the address it returned.
    assert.equal(
      await post(`http://rebind.invalid:${port}/`, EgressPolicy.allowing(['127.0.0.1/32']), rebinding),
      200,
    );
    assert.equal(lookups, 1);
    // The next connection gets the metadata address, and is refused.
    assert.equal(
      await post(`http://rebind.invalid:${port}/`, EgressPolicy.allowing(['127.0.0.1/32']), rebinding),
      OutboxErrorCode.WebhookEgressRefused,
    );
  });

  it('uses the allowed addresses of a name that resolves to both kinds', async () => {
    const mixed: Resolver = (_host, _options, callback) =>
      callback(null, [
        { address: '10.0.0.1', family: 4 },
        { address: '127.0.0.1', family: 4 },
      ]);
    assert.equal(
      await post(`http://mixed.invalid:${port}/`, EgressPolicy.allowing(['127.0.0.1/32']), mixed),
      200,
    );
  });
});
