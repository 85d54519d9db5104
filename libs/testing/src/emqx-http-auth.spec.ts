import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  applyEmqxEnvOverrides,
  emqxAssignedClientId,
  emqxAuthnOutcome,
  emqxAuthzOutcome,
  emqxHttpSources,
  parseHocon,
  renderEmqxHttpRequest,
} from './emqx-http-auth';

const conf = `
# comment
node { name = "emqx@127.0.0.1", data_dir = data }
listeners.tcp.default.bind = "0.0.0.0:1883"
listeners.tcp.default { max_connections = 1024 }  // merged into the same object
mqtt { max_packet_size = 1MB, retry = 30s, enabled = true, n = 8000 }
authentication = [
  { mechanism = password_based, backend = built_in_database },
  {
    mechanism = password_based
    backend = http
    method = post
    url = "http://svc:3001/auth/\${clientid}?node=\${node}&u=\${username}"
    headers { "Content-Type" = "application/json", "x-id" = "\${clientid}" }
    body { clientid = "\${clientid}", user = "\${username}", password = "\${password}", peer = "\${peerhost}", dollar = "\${$}{clientid}", other = "\${topic}" }
  }
]
authorization.sources = [{ type = http, method = post, url = "http://svc/authz", headers { "content-type" = "application/x-www-form-urlencoded" }, body { topic = "\${topic}", action = "\${action}", access = "\${access}", qos = "\${qos}" } }]
`;

describe('EMQX HTTP auth (as EMQX 5.8 does it)', () => {
  it('reads HOCON: dotted keys, merged objects, arrays, unquoted values', () => {
    const parsed = parseHocon(conf);
    assert.deepEqual(parsed.listeners, { tcp: { default: { bind: '0.0.0.0:1883', max_connections: 1024 } } });
    assert.deepEqual(parsed.mqtt, { max_packet_size: '1MB', retry: '30s', enabled: true, n: 8000 });
    assert.equal((parsed.authentication as unknown[]).length, 2);
    assert.throws(() => parseHocon('a = ${SECRET}'), /substitution/);
  });

  it('applies EMQX_* overrides: 1-based array paths, HOCON values, whole headers maps only', () => {
    const overridden = applyEmqxEnvOverrides(parseHocon(conf), {
      EMQX_AUTHENTICATION__2__HEADERS: '{"content-type" = "application/json", "x-secret" = "s3"}',
      EMQX_MQTT__N: '16',
      EMQX_NODE__NAME: 'not hocon = {',
      OTHER: 'ignored',
    });
    const { authn } = emqxHttpSources(overridden);
    assert.deepEqual(authn.headers, { 'content-type': 'application/json', 'x-secret': 's3' });
    assert.equal((overridden.mqtt as { n: number }).n, 16);
    assert.equal((overridden.node as { name: string }).name, 'not hocon = {');
    assert.throws(
      () => applyEmqxEnvOverrides(parseHocon(conf), { EMQX_AUTHENTICATION__2__HEADERS__X_SECRET: 's' }),
      /whole map/,
    );
    assert.throws(() => applyEmqxEnvOverrides(parseHocon(conf), { EMQX_AUTHENTICATION__0__ENABLE: 'false' }));
  });

  it('renders requests: allowed placeholders, "" for undefined, others literal, JSON or form bodies', () => {
    const { authn, authz } = emqxHttpSources(parseHocon(conf));
    assert.equal(authn.headersEnvName, 'EMQX_AUTHENTICATION__2__HEADERS');
    assert.equal(authz.headersEnvName, 'EMQX_AUTHORIZATION__SOURCES__1__HEADERS');
    const request = renderEmqxHttpRequest(authn, { clientid: 'a b/c', peerhost: '::ffff:10.0.0.1' });
    assert.equal(request.path, '/auth/a+b%2Fc?node=%24%7Bnode%7D&u=');
    assert.deepEqual(request.headers, { 'content-type': 'application/json', 'x-id': 'a b/c' });
    assert.deepEqual(JSON.parse(request.body!), {
      clientid: 'a b/c',
      user: '',
      password: '',
      peer: '::ffff:10.0.0.1',
      dollar: '${clientid}',
      other: '${topic}',
    });
    const form = renderEmqxHttpRequest(authz, {
      clientid: 'c',
      peerhost: '10.0.0.1',
      topic: 'a/b c',
      action: 'subscribe',
      qos: 1,
    });
    assert.equal(form.body, 'topic=a%2Fb+c&action=subscribe&access=1&qos=1');
  });

  it('gives a client without a client id a random one, as EMQX does before authenticating', () => {
    const id = emqxAssignedClientId('');
    assert.match(id, /^[A-Za-z][A-Za-z0-9]{15}$/);
    assert.notEqual(emqxAssignedClientId(''), id);
    assert.equal(emqxAssignedClientId('dev-1'), 'dev-1');
  });

  it('reads answers as EMQX does', () => {
    const json = 'application/json; charset=utf-8';
    assert.deepEqual(emqxAuthnOutcome(200, json, '{"result":"allow","is_superuser":"true"}'), {
      result: 'allow',
      isSuperuser: true,
    });
    assert.deepEqual(emqxAuthnOutcome(204, undefined, ''), { result: 'allow', isSuperuser: false });
    assert.deepEqual(emqxAuthnOutcome(200, json, '{"result":"deny"}'), { result: 'deny' });
    for (const [status, type, body] of [
      [201, json, '{"result":"allow"}'],
      [400, json, '{"result":"deny"}'],
      [200, json, '{"ok":true}'],
      [200, json, 'not json'],
      [200, undefined, '{"result":"allow"}'],
      [200, 'text/plain', 'result=allow'],
    ] as const)
      assert.deepEqual(
        emqxAuthnOutcome(status, type, body),
        { result: 'ignore' },
        `${status} ${type} ${body}`,
      );
    assert.equal(emqxAuthzOutcome(200, undefined, '{"result":"deny"}'), 'deny');
    assert.equal(emqxAuthzOutcome(200, 'application/x-www-form-urlencoded', 'result=allow'), 'allow');
    assert.equal(emqxAuthzOutcome(204, undefined, ''), 'allow');
    assert.equal(emqxAuthzOutcome(201, json, '{"result":"allow"}'), 'nomatch');
    assert.equal(emqxAuthzOutcome(200, json, '{"result":"maybe"}'), 'nomatch');
  });
});
