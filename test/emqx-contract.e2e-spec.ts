/**
 * The contract between EMQX and dmp-mqtt, checked without EMQX (it cannot run here): the HTTP
 * authenticator and authorization source are read from docker/emqx/emqx.conf itself, with the `EMQX_*`
 * headers overrides the deployment sets (docker-compose.yml's, or the ones emqx.conf documents while the
 * compose file has none), rendered as EMQX 5.8 renders them, and sent to a real dmp-mqtt (real Redis,
 * devices registered through its admin API). Each answer is then read as EMQX reads it
 * (libs/testing emqx-http-auth.ts cites the EMQX source of each rule). Change emqx.conf's templates or
 * dmp-mqtt's endpoints, and this fails.
 */
import {
  applyEmqxEnvOverrides,
  emqxAssignedClientId,
  emqxAuthnOutcome,
  emqxAuthzOutcome,
  emqxHttpSources,
  parseHocon,
  REPO_ROOT,
  renderEmqxHttpRequest,
  startAuthOnlyMqtt,
  type EmqxClientInfo,
  type EmqxHttpSource,
  type HoconObject,
  type RunningApp,
  callAdminApi,
} from '@dmp/testing';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { request as httpRequest } from 'node:http';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { parse as parseYaml } from 'yaml';

const run = randomBytes(3).toString('hex');
const prefix = `emqxc-${run}`;
const adminToken = randomBytes(24).toString('hex');
const authSecret = randomBytes(24).toString('hex');
const service = { username: `emqxc-svc-${run}`, password: randomBytes(16).toString('hex') };

const fileConf = parseHocon(readFileSync(join(REPO_ROOT, 'docker/emqx/emqx.conf'), 'utf8'));
const fileSources = emqxHttpSources(fileConf);

/**
 * The `EMQX_*__HEADERS` variables of docker-compose.yml's emqx service, with compose's `${…}` interpolated
 * (the shared secret: this run's); when it sets none, the ones emqx.conf documents.
 */
function deploymentHeaderOverrides(secret: string): Record<string, string> {
  const compose = parseYaml(readFileSync(join(REPO_ROOT, 'docker/docker-compose.yml'), 'utf8'), {
    merge: true,
  }) as { services: Record<string, { environment?: Record<string, unknown> }> };
  const environment = compose.services.emqx?.environment ?? {};
  const interpolate = (value: string) =>
    value.replace(/\$\{([A-Z0-9_]+)(?::?[-?]([^}]*))?\}/g, (_, name: string, fallback?: string) =>
      name.includes('AUTH_HTTP_SECRET') ? secret : (fallback ?? ''),
    );
  const fromCompose = Object.fromEntries(
    Object.entries(environment)
      .filter(([name]) => /^EMQX_.*__HEADERS$/.test(name))
      .map(([name, value]) => [name, interpolate(String(value))]),
  );
  // Both sources' headers come from compose: without them EMQX would call dmp-mqtt without the secret.
  assert.deepEqual(
    Object.keys(fromCompose).sort(),
    [fileSources.authn.headersEnvName, fileSources.authz.headersEnvName].sort(),
    "the emqx service sets both HTTP sources' headers",
  );
  return fromCompose;
}

const overrides = deploymentHeaderOverrides(authSecret);
const deployed = emqxHttpSources(applyEmqxEnvOverrides(fileConf, overrides));

interface Answer {
  status: number;
  contentType: string | undefined;
  text: string;
}

/** Sends what EMQX would send for `info` to dmp-mqtt (the URL's host replaced by the test's instance). */
function send(app: RunningApp, source: EmqxHttpSource, info: EmqxClientInfo): Promise<Answer> {
  const rendered = renderEmqxHttpRequest(source, info);
  const base = new URL(app.baseUrl);
  return new Promise((resolve, reject) => {
    const outgoing = httpRequest(
      {
        host: base.hostname,
        port: base.port,
        method: rendered.method,
        path: rendered.path,
        headers: rendered.headers,
      },
      (response) => {
        let text = '';
        response.setEncoding('utf8');
        response.on('data', (chunk: string) => (text += chunk));
        response.on('end', () =>
          resolve({ status: response.statusCode ?? 0, contentType: response.headers['content-type'], text }),
        );
      },
    );
    outgoing.on('error', reject);
    outgoing.end(rendered.body);
  });
}

/** dmp-mqtt's side of the contract: always 200, JSON, an explicit result (never left to EMQX's defaults). */
function assertExplicit(answer: Answer, keys: string[], what: string): void {
  assert.equal(answer.status, 200, `${what}: status`);
  assert.match(answer.contentType ?? '', /^application\/json/, `${what}: content type`);
  const body = JSON.parse(answer.text) as Record<string, unknown>;
  assert.deepEqual(Object.keys(body).sort(), [...keys].sort(), `${what}: fields`);
  assert.ok(body.result === 'allow' || body.result === 'deny', `${what}: result ${String(body.result)}`);
}

describe('EMQX ↔ dmp-mqtt contract (docker/emqx/emqx.conf rendered as EMQX 5.8 does)', () => {
  let app: RunningApp;
  const secrets = new Map<string, string>();
  const device = (n: number) => `${prefix}-d${n}`;

  const admin = (method: string, path: string, body?: unknown) =>
    callAdminApi(`${app.baseUrl}/admin/devices${path}`, adminToken, method, body);

  /** EMQX's authentication outcome for a CONNECT, and dmp-mqtt's answer explicit. */
  const connect = async (
    connectPacket: { clientid: string; username?: string; password?: string },
    { peerhost = '10.1.2.3', source = deployed.authn } = {},
  ) => {
    const info = { ...connectPacket, clientid: emqxAssignedClientId(connectPacket.clientid), peerhost };
    const answer = await send(app, source, info);
    assertExplicit(answer, ['result', 'is_superuser'], `authn ${JSON.stringify(connectPacket)}`);
    return emqxAuthnOutcome(answer.status, answer.contentType, answer.text);
  };

  /** EMQX's authorization outcome for a PUBLISH or SUBSCRIBE of a connected client. */
  const access = async (
    clientid: string,
    action: 'publish' | 'subscribe',
    topic: string,
    { username = clientid, source = deployed.authz } = {},
  ) => {
    const info = { clientid, username, peerhost: '10.1.2.3', action, topic, qos: 1 as const, retain: false };
    const answer = await send(app, source, info);
    assertExplicit(answer, ['result'], `authz ${clientid} ${action} ${topic}`);
    return emqxAuthzOutcome(answer.status, answer.contentType, answer.text);
  };

  const allowed = { result: 'allow', isSuperuser: false };
  const denied = { result: 'deny' };

  before(async () => {
    app = await startAuthOnlyMqtt(prefix, { adminToken, authSecret, service });
    for (const n of [1, 2, 3]) {
      const { status, body } = await admin('POST', '', { deviceId: device(n), tenantId: 't-emqxc' });
      assert.equal(status, 201, JSON.stringify(body));
      secrets.set(device(n), body.secret as string);
    }
  });

  after(async () => {
    if (!app) return;
    for (const n of [1, 2, 3]) await admin('DELETE', `/${device(n)}`).catch(() => undefined);
    await app.stop();
  });

  it('has EMQX send POST requests to dmp-mqtt with the shared secret on both sources', () => {
    for (const [kind, source] of Object.entries(deployed)) {
      assert.equal(source.method, 'post', kind);
      assert.equal(source.url.host, 'dmp-mqtt:3001', kind);
      assert.equal(source.url.pathname, `/auth/mqtt/${kind}`, kind);
      assert.equal(source.headers['content-type'], 'application/json', kind);
      assert.equal(source.headers['x-dmp-auth-secret'], authSecret, `${kind}: ${source.headersEnvName}`);
    }
    // The overrides replace the headers of the HTTP sources, not of another entry of the chain.
    assert.deepEqual(Object.keys(overrides).sort(), [
      fileSources.authn.headersEnvName,
      fileSources.authz.headersEnvName,
    ]);
  });

  it('lets a registered, enabled device in with its own client id and secret only', async () => {
    const id = device(1);
    const secret = secrets.get(id)!;
    assert.deepEqual(await connect({ clientid: id, username: id, password: secret }), allowed);
    // A dual-stack listener reports an IPv4 peer as inet:ntoa prints it.
    assert.deepEqual(
      await connect({ clientid: id, username: id, password: secret }, { peerhost: '::ffff:10.1.2.3' }),
      allowed,
    );
    assert.deepEqual(await connect({ clientid: id, username: id, password: `${secret}x` }), denied);
    assert.deepEqual(
      await connect({ clientid: id, username: id, password: secrets.get(device(2))! }),
      denied,
    );
    assert.deepEqual(await connect({ clientid: id, username: id }), denied, 'no password');
    assert.deepEqual(await connect({ clientid: `${id}-2`, username: id, password: secret }), denied);
    assert.deepEqual(
      await connect({ clientid: '', username: id, password: secret }),
      denied,
      'EMQX-assigned id',
    );
    assert.deepEqual(await connect({ clientid: '' }), denied, 'anonymous');
    const unknown = `${prefix}-unknown`;
    assert.deepEqual(await connect({ clientid: unknown, username: unknown, password: secret }), denied);
  });

  it('refuses a disabled device and lets it in again once enabled', async () => {
    const id = device(3);
    const credentials = { clientid: id, username: id, password: secrets.get(id)! };
    assert.equal((await admin('PATCH', `/${id}`, { status: 'disabled' })).status, 200);
    assert.deepEqual(await connect(credentials), denied);
    assert.equal(await access(id, 'publish', `devices/${id}/telemetry`), 'deny');
    assert.equal((await admin('PATCH', `/${id}`, { status: 'enabled' })).status, 200);
    assert.deepEqual(await connect(credentials), allowed);
  });

  it('makes the service account a superuser (EMQX then skips authorization for it)', async () => {
    assert.deepEqual(
      await connect({ clientid: 'dmp-mqtt-1', username: service.username, password: service.password }),
      { result: 'allow', isSuperuser: true },
    );
    assert.deepEqual(
      await connect({ clientid: 'dmp-mqtt-1', username: service.username, password: 'guess' }),
      denied,
    );
    assert.equal(
      await access('dmp-mqtt-1', 'subscribe', '$share/dmp/devices/+/telemetry', {
        username: service.username,
      }),
      'allow',
    );
  });

  it('lets a device publish on its own channels and subscribe to its own command topic, nothing else', async () => {
    const id = device(1);
    for (const channel of ['telemetry', 'event', 'snapshot', 'heartbeat'])
      assert.equal(await access(id, 'publish', `devices/${id}/${channel}`), 'allow', channel);
    assert.equal(await access(id, 'subscribe', `devices/${id}/command`), 'allow');
    for (const [action, topic] of [
      ['publish', `devices/${device(2)}/telemetry`],
      ['publish', `devices/${id}/command`],
      ['publish', `devices/${id}/telemetry/extra`],
      ['subscribe', `devices/${device(2)}/command`],
      ['subscribe', 'devices/+/command'],
      ['subscribe', `devices/${id}/#`],
      ['subscribe', `$share/g/devices/${id}/command`],
    ] as const)
      assert.equal(await access(id, action, topic), 'deny', `${action} ${topic}`);
    // Another client id under the device's username.
    assert.equal(await access(`${id}-2`, 'publish', `devices/${id}/telemetry`, { username: id }), 'deny');
  });

  it('denies every call that lacks the shared secret or carries a wrong one', async () => {
    const id = device(1);
    const credentials = { clientid: id, username: id, password: secrets.get(id)! };
    // emqx.conf alone, without the deployment's EMQX_*__HEADERS: no secret is sent.
    assert.equal(fileSources.authn.headers['x-dmp-auth-secret'], undefined);
    assert.deepEqual(await connect(credentials, { source: fileSources.authn }), denied);
    assert.equal(
      await access(id, 'publish', `devices/${id}/telemetry`, { source: fileSources.authz }),
      'deny',
    );
    const wrong = emqxHttpSources(
      applyEmqxEnvOverrides(fileConf, deploymentHeaderOverrides(`${authSecret}x`)),
    );
    assert.deepEqual(await connect(credentials, { source: wrong.authn }), denied);
    assert.equal(await access(id, 'publish', `devices/${id}/telemetry`, { source: wrong.authz }), 'deny');
  });

  it('configures TLS for devices on 8883, no WebSocket listeners, and no durable sessions', () => {
    const listeners = fileConf.listeners as Record<string, Record<string, HoconObject>>;
    const ssl = listeners.ssl.default;
    assert.equal(ssl.bind, '0.0.0.0:8883');
    assert.deepEqual(ssl.ssl_options, {
      ...(ssl.ssl_options as HoconObject),
      cacertfile: '/opt/emqx/etc/certs/dmp/ca.pem',
      certfile: '/opt/emqx/etc/certs/dmp/server.pem',
      keyfile: '/opt/emqx/etc/certs/dmp/server.key',
    });
    assert.equal(listeners.ws?.default?.enable, false);
    assert.equal(listeners.wss?.default?.enable, false);
    // EMQX 5.8 open source refuses shared subscriptions in durable sessions (see emqx.conf).
    assert.equal((fileConf.durable_sessions as HoconObject | undefined)?.enable, false);
  });
});
