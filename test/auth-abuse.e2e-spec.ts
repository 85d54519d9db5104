/**
 * Login abuse against a real dmp-mqtt (real Redis, devices registered through its admin API), its
 * authn/authz endpoints called as EMQX calls them: a flood of wrong passwords for one id must not slow
 * another device's login, unknown and known ids must cost the same, and the service account is a
 * superuser under a service client id only. Timing is compared as ratios measured in the same run.
 */
import { callAdminApi, readMetric, startAuthOnlyMqtt, type RunningApp } from '@dmp/testing';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, it } from 'node:test';

const run = randomBytes(3).toString('hex');
const prefix = `abuse-${run}`;
const adminToken = randomBytes(24).toString('hex');
const authSecret = randomBytes(24).toString('hex');
const service = { username: `abuse-svc-${run}`, password: randomBytes(16).toString('hex') };
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const peer = () => `10.${1 + Math.floor(Math.random() * 250)}.${Math.floor(Math.random() * 250)}.7`;

describe('login abuse (dmp-mqtt authn/authz)', () => {
  let app: RunningApp;
  const secrets = new Map<string, string>();
  const device = (n: number) => `${prefix}-d${n}`;

  const admin = (method: string, path: string, body?: unknown) =>
    callAdminApi(`${app.baseUrl}/admin/devices${path}`, adminToken, method, body);
  const call = async (endpoint: 'authn' | 'authz', body: Record<string, string>) => {
    const response = await fetch(`${app.baseUrl}/auth/mqtt/${endpoint}`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-dmp-auth-secret': authSecret },
      body: JSON.stringify(body),
    });
    assert.equal(response.status, 200);
    return (await response.json()) as { result: string; is_superuser?: boolean };
  };
  const login = (id: string, password: string, peerhost = peer(), clientid = id) =>
    call('authn', { clientid, username: id, password, peerhost });
  const timed = async (id: string, password: string, peerhost?: string) => {
    const started = performance.now();
    const answer = await login(id, password, peerhost);
    return { answer, ms: performance.now() - started };
  };

  before(async () => {
    app = await startAuthOnlyMqtt(
      prefix,
      { adminToken, authSecret, service },
      {
        MQTT_AUTH_FAILURES_PER_ID_BURST: '3',
        MQTT_AUTH_FAILURES_PER_ID_PER_MINUTE: '60',
      },
    );
    for (let n = 0; n < 12; n++) {
      const { status, body } = await admin('POST', '', { deviceId: device(n) });
      assert.equal(status, 201, JSON.stringify(body));
      secrets.set(device(n), body.secret as string);
    }
  });

  after(async () => {
    if (!app) return;
    for (let n = 0; n < 12; n++) await admin('DELETE', `/${device(n)}`).catch(() => undefined);
    await app.stop();
  });

  it("does not let a flood of wrong passwords for one id slow another device's login", async () => {
    // Baseline: first logins (one scrypt each), nothing else going on.
    const baseline: number[] = [];
    for (const n of [1, 2, 3]) {
      const { answer, ms } = await timed(device(n), secrets.get(device(n))!);
      assert.equal(answer.result, 'allow');
      baseline.push(ms);
    }
    const target = device(0);
    const home = '192.0.2.10';
    assert.equal((await login(target, secrets.get(target)!, home)).result, 'allow');
    // 100 wrong passwords for one id, from 100 addresses, all at once.
    const flood = Promise.all(Array.from({ length: 100 }, () => login(target, 'wrong-password-guess')));
    const during = await timed(device(4), secrets.get(device(4))!);
    const floodAnswers = await flood;
    assert.ok(floodAnswers.every((a) => a.result === 'deny'));
    assert.equal(during.answer.result, 'allow');
    const ratio = during.ms / median(baseline);
    // Throttled: at most `burst` (3) of the flood reach scrypt. Unthrottled, all 100 did: ≈ 50× or more.
    assert.ok(ratio < 20, `login during the flood took ${ratio.toFixed(1)}× the baseline`);
    const throttled = await readMetric(app.baseUrl, 'dmp_mqtt_auth_denied_total', {
      endpoint: 'authn',
      reason: 'throttled_id',
    });
    assert.ok(throttled >= 80, `throttled_id = ${throttled}`);
    // The flooded device still gets in from where it logged in before.
    assert.equal((await login(target, secrets.get(target)!, home)).result, 'allow');
  });

  it('answers an unknown id, a disabled device and a wrong password in the same time', async () => {
    assert.equal((await admin('PATCH', `/${device(11)}`, { status: 'disabled' })).status, 200);
    const known: number[] = [];
    const unknown: number[] = [];
    const disabled: number[] = [];
    for (let i = 0; i < 5; i++) {
      known.push((await timed(device(5 + i), 'wrong-password-guess')).ms);
      unknown.push((await timed(`${prefix}-nobody-${i}`, 'wrong-password-guess')).ms);
      disabled.push((await timed(device(11), secrets.get(device(11))!)).ms);
    }
    const unknownRatio = median(known) / median(unknown);
    const disabledRatio = median(known) / median(disabled);
    assert.ok(unknownRatio > 0.5 && unknownRatio < 2, `known / unknown = ${unknownRatio.toFixed(2)}`);
    assert.ok(disabledRatio > 0.5 && disabledRatio < 2, `known / disabled = ${disabledRatio.toFixed(2)}`);
  });

  it('makes the service account a superuser under a service client id only', async () => {
    const { username, password } = service;
    assert.deepEqual(await login(username, password, undefined, 'dmp-mqtt-host1'), {
      result: 'allow',
      is_superuser: true,
    });
    assert.deepEqual(await login(username, password, undefined, prefix), {
      result: 'allow',
      is_superuser: true,
    });
    for (const clientid of ['any-client', device(1), `x-${prefix}`])
      assert.deepEqual(
        await login(username, password, undefined, clientid),
        { result: 'deny', is_superuser: false },
        clientid,
      );
    const authz = (clientid: string) =>
      call('authz', { clientid, username, topic: 'devices/x/command', action: 'publish' });
    assert.deepEqual(await authz('dmp-mqtt-host1'), { result: 'allow' });
    assert.deepEqual(await authz('any-client'), { result: 'deny' });
  });

  it('refuses to register a device under a reserved name, with a stable code', async () => {
    for (const deviceId of [service.username, 'dmp-mqtt-host1', prefix, 'dmp-kernel', 'dmp-kernel-h-1']) {
      const { status, body } = await admin('POST', '', { deviceId });
      assert.equal(status, 409, deviceId);
      assert.equal(body.code, 'DMP_ERR_RESERVED_DEVICE_ID', deviceId);
    }
  });
});
