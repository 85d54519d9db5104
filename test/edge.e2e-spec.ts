/**
 * The edge, end to end (issue #4): only real devices, only good data, nothing good lost.
 *
 * The real chain — Mosquitto → dmp-mqtt → dmp-kernel → RocketMQ → dmp-data → ClickHouse, with Redis as the
 * device registry — as built processes. EMQX's HTTP authn/authz calls are made exactly as EMQX makes them
 * (Mosquitto, standing in for EMQX, cannot call them). Then well over 1,000 generated bad inputs of every
 * kind, mixed with good traffic from registered devices, go through the real broker; the test checks that
 * every good message is in `telemetry_raw` (the exact set of message ids), every bad one was refused with
 * its expected reason — in dmp-mqtt's metrics and, with its raw payload, in `dead_letters` — and that the
 * three apps are still healthy.
 *
 * Isolation on the shared stack: its own ClickHouse database, share group, client id, RocketMQ topics
 * (dmp_edge_test_*) and consumer groups (dmp_data_edge_test, dmp_data_dead_letter_edge_test), created by
 * the test, and device ids under a per-run prefix. dmp-mqtt subscribes to `devices/#` here, so that publishes to wrong
 * channels reach it too (EMQX's ACL would refuse them before any subscriber in production); other
 * traffic on the broker then reaches it as well, which is why the assertions select this run's devices.
 */
import { createClient } from '@clickhouse/client';
import { RejectCode } from '@dmp/contracts';
import {
  callAdminApi,
  createRocketmqResources,
  deadLetterKeyOf as keyOf,
  deadLetterRowKey as rowKey,
  edgeInputs,
  freePort,
  INJECTIONS,
  MqttPublisher,
  PROTOBUF_CONTENT_TYPE as PROTOBUF,
  readMetric,
  REPO_ROOT,
  stack,
  startApp,
  UNICODE_TEXTS,
  waitFor,
  type EdgeBad as Bad,
  type EdgeGood as Good,
  type EdgePublish as Publish,
  type RunningApp,
} from '@dmp/testing';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';

const run = randomBytes(3).toString('hex');
const prefix = `edge-${run}`;
const database = `dmp_test_edge_${process.pid}`;
const clientId = `edge-${run}`;
const topics = {
  event: 'dmp_edge_test_event',
  snapshot: 'dmp_edge_test_snapshot',
  deadLetter: 'dmp_edge_test_dead_letter',
};
const groups = { data: 'dmp_data_edge_test', deadLetter: 'dmp_data_dead_letter_edge_test' };
const adminToken = randomBytes(24).toString('hex');
const authSecret = randomBytes(24).toString('hex');
const service = { username: `edge-svc-${run}`, password: randomBytes(16).toString('hex') };
/**
 * A Redis database of its own: another dmp-mqtt on the shared stack (another test's, another share group)
 * would otherwise find this run's devices registered, accept their messages too, and mark them as seen
 * in the shared duplicate keys before this run's dmp-mqtt gets to them.
 */
const redisUrl = `${stack.redis.url.replace(/\/\d*$/, '')}/${1 + (Number.parseInt(run, 16) % 15)}`;
const MAX_PAYLOAD_BYTES = 4_096;
const RATE = { perSecond: 20, burst: 50 };

// A device's messages reach dmp-kernel one round trip after the other (per-device order): many devices
// with few messages each keep the run short. Each device stays below the bucket's burst, but the flood.
const GOOD_DEVICES = 40;
const GOOD_PER_DEVICE = 40;
const BAD_SENDERS = 40;
const FLOOD = 300;
// The bad-input flood (issue #4: ~18,000 refused messages once starved good traffic): unknown devices,
// many messages each, mixed with good traffic that must still arrive within GOOD_WITHIN_MS.
const UNKNOWN_DEVICES = 200;
const UNKNOWN_PER_DEVICE = 30;
const GOOD_DURING_FLOOD_DEVICES = 10;
const GOOD_DURING_FLOOD_PER_DEVICE = 30;
const GOOD_WITHIN_MS = 30_000;

const goodId = (i: number) => `${prefix}-g${String(i).padStart(2, '0')}`;
const senderId = (i: number) => `${prefix}-b${String(i).padStart(2, '0')}`;
const floodId = `${prefix}-flood`;
const toggledId = `${prefix}-toggled`;
const lateId = `${prefix}-late`;
const unknownId = (i: number) => `${prefix}-x${String(i).padStart(3, '0')}`;
const goodIds = Array.from({ length: GOOD_DEVICES }, (_, i) => goodId(i));
const senderIds = Array.from({ length: BAD_SENDERS }, (_, i) => senderId(i));
const registeredIds = [...goodIds, ...senderIds, floodId, toggledId];

const seed = Number.parseInt(run, 16);
const { random, pick, shuffle, good, validBody, generateBad } = edgeInputs({
  seed,
  prefix,
  senders: senderIds,
  victims: goodIds,
  maxPayloadBytes: MAX_PAYLOAD_BYTES,
  baseTs: Date.now() - 60_000,
});

const execFileAsync = promisify(execFile);

interface DeadRow {
  message_id: string;
  error_code: string;
  source_topic: string;
  content_type: string;
  payload: string;
  device_id: string;
  source: string;
}

// ---------------------------------------------------------------------------------------------------

describe('the edge: only real devices, only good data, nothing good lost', () => {
  const apps: RunningApp[] = [];
  let mqttApp: RunningApp;
  const clickhouse = createClient({ url: stack.clickhouse.url, database: 'default' });
  let publisher: MqttPublisher | undefined;
  const secrets = new Map<string, string>();

  const admin = (method: string, path: string, body?: unknown) =>
    callAdminApi(`${mqttApp.baseUrl}/admin/devices${path}`, adminToken, method, body);

  /** As EMQX's HTTP authenticator/authorizer sends it (emqx.conf body templates, JSON, shared secret header). */
  const emqx = async (endpoint: 'authn' | 'authz', body: unknown, secret: string | null = authSecret) => {
    const response = await fetch(`${mqttApp.baseUrl}/auth/mqtt/${endpoint}`, {
      method: 'POST',
      headers: {
        'content-type': 'application/json',
        ...(secret === null ? {} : { 'x-dmp-auth-secret': secret }),
      },
      body: typeof body === 'string' ? body : JSON.stringify(body),
    });
    assert.equal(response.status, 200, `${endpoint} answers 200 (EMQX reads anything else as "ignore")`);
    assert.match(response.headers.get('content-type') ?? '', /^application\/json/);
    return (await response.json()) as { result: string; is_superuser?: boolean };
  };
  const authn = (clientid: string, username: string, password: string, header?: string | null) =>
    emqx('authn', { clientid, username, password, peerhost: '10.1.2.3' }, header);
  const authz = (clientid: string, username: string, topic: string, action: string) =>
    emqx('authz', { clientid, username, topic, action });
  const denied = { result: 'deny', is_superuser: false };

  const query = async <T>(sql: string): Promise<T[]> => {
    const result = await clickhouse.query({ query: sql, format: 'JSONEachRow' });
    return result.json<T>();
  };
  const storedIds = async () =>
    new Set(
      (
        await query<{ message_id: string }>(
          `SELECT message_id FROM ${database}.telemetry_raw FINAL WHERE device_id LIKE '${prefix}-%'`,
        )
      ).map((r) => r.message_id),
    );
  const deadLetters = () =>
    query<DeadRow>(
      `SELECT message_id, error_code, source_topic, content_type, payload, device_id, source
       FROM ${database}.dead_letters FINAL
       WHERE source_instance = '${clientId}' AND position(source_topic, '${prefix}') > 0`,
    );
  const metric = (name: string, labels: Record<string, string> = {}) =>
    readMetric(mqttApp.baseUrl, name, labels);
  const assertHealthy = async () => {
    for (const app of apps)
      assert.equal((await fetch(`${app.baseUrl}/health`)).status, 200, `${app.name} is healthy`);
  };

  before(async () => {
    await createRocketmqResources({
      topics: { [topics.event]: 'FIFO', [topics.snapshot]: 'FIFO', [topics.deadLetter]: 'NORMAL' },
      groups: { [groups.data]: 'orderly', [groups.deadLetter]: 'concurrently' },
    });
    const common = {
      CLICKHOUSE_DATABASE: database,
      REDIS_URL: redisUrl,
      ROCKETMQ_TOPIC_EVENT: topics.event,
      ROCKETMQ_TOPIC_SNAPSHOT: topics.snapshot,
      ROCKETMQ_TOPIC_DEAD_LETTER: topics.deadLetter,
      OTEL_ENABLED: 'false',
      LOG_LEVEL: 'warn',
    };
    const kernelGrpc = `127.0.0.1:${await freePort()}`;
    const [data, kernel, edge] = await Promise.all([
      startApp(
        'dmp-data',
        {
          ...common,
          DATA_CONSUMER_GROUP: groups.data,
          DEAD_LETTER_CONSUMER_GROUP: groups.deadLetter,
          DATA_BATCH_MAX_WAIT_MS: '200',
          DEAD_LETTER_BATCH_MAX_WAIT_MS: '200',
        },
        { label: `edge-${run}-dmp-data` },
      ),
      // No rules: their linkage commands (devices/<id>/command) would reach this dmp-mqtt, which
      // subscribes to devices/# to see wrong topics, and be refused as such.
      startApp(
        'dmp-kernel',
        { ...common, KERNEL_GRPC_URL: kernelGrpc, KERNEL_RULES_ENABLED: 'false' },
        { label: `edge-${run}-dmp-kernel` },
      ),
      startApp(
        'dmp-mqtt',
        {
          ...common,
          KERNEL_GRPC_URL: kernelGrpc,
          MQTT_SHARE_GROUP: `edge${run}`,
          MQTT_CLIENT_ID: clientId,
          MQTT_TOPICS: 'devices/#',
          MQTT_SESSION_EXPIRY_SECONDS: '60',
          MQTT_MAX_PAYLOAD_BYTES: String(MAX_PAYLOAD_BYTES),
          ADMIN_TOKEN: adminToken,
          MQTT_AUTH_HTTP_SECRET: authSecret,
          MQTT_SERVICE_USERNAME: service.username,
          MQTT_SERVICE_PASSWORD: service.password,
          DEVICE_RATE_LIMIT_PER_SECOND: String(RATE.perSecond),
          DEVICE_RATE_LIMIT_BURST: String(RATE.burst),
          // Phase 2 re-sends content seconds after phase 1: the default 5 s could be too short on a slow machine.
          DEDUP_CONTENT_WINDOW_MS: '120000',
        },
        { label: `edge-${run}-dmp-mqtt` },
      ),
    ]);
    apps.push(data, kernel, edge);
    mqttApp = edge;
    console.log(
      `edge e2e: run ${run}, seed ${seed}, database ${database}, ${redisUrl}, logs .stack/logs/tests/edge-${run}-*.log`,
    );

    // Devices register through the admin API, as an operator (or `dmp devices register`) would.
    await Promise.all(
      registeredIds.map(async (deviceId) => {
        const { status, body } = await admin('POST', '', { deviceId, tenantId: 't-edge', tags: { run } });
        assert.equal(status, 201, JSON.stringify(body));
        secrets.set(deviceId, body.secret as string);
      }),
    );
    publisher = await MqttPublisher.open(stack.mqtt.url, prefix, 4);
  });

  after(async () => {
    await publisher?.close().catch(() => undefined);
    if (mqttApp)
      for (const id of [...registeredIds, lateId]) await admin('DELETE', `/${id}`).catch(() => undefined);
    // Upstream first, so that each app drains into a running next hop.
    // Bounded: an app that does not stop within 15 s of SIGTERM is killed (and the test goes on).
    for (const app of apps.reverse()) {
      const stopped = app.stop();
      const timer = setTimeout(() => {
        console.error(`edge e2e: ${app.name} still running 15 s after SIGTERM, killing it`);
        void app.stop('SIGKILL');
      }, 15_000);
      await stopped;
      clearTimeout(timer);
    }
    await clickhouse.command({ query: `DROP DATABASE IF EXISTS ${database}` });
    await clickhouse.close();
  });

  describe("EMQX's HTTP authn/authz calls: own credentials, own topics, nothing else", () => {
    const device = goodId(0);

    it('lets a device in with its own credentials and the service account as superuser, no one else', async () => {
      const secret = secrets.get(device)!;
      assert.deepEqual(await authn(device, device, secret), { result: 'allow', is_superuser: false });
      assert.deepEqual(await authn(clientId, service.username, service.password), {
        result: 'allow',
        is_superuser: true,
      });
      assert.deepEqual(await authn(device, device, `${secret}x`), denied, 'wrong secret');
      assert.deepEqual(
        await authn(device, device, secrets.get(goodId(1))!),
        denied,
        "another device's secret",
      );
      assert.deepEqual(await authn(goodId(1), goodId(1), secret), denied, "another device's id");
      assert.deepEqual(await authn(`${device}-2`, device, secret), denied, 'client id is not the device id');
      assert.deepEqual(await authn(`${prefix}-u1`, `${prefix}-u1`, secret), denied, 'unknown device');
      assert.deepEqual(await authn(device, device, ''), denied, 'no password');
      assert.deepEqual(await authn('', '', ''), denied, 'anonymous');
      assert.deepEqual(
        await authn('c', service.username, 'guess'),
        denied,
        'service account, wrong password',
      );
      assert.deepEqual(await authn(device, device, secret, null), denied, 'no shared secret header');
      assert.deepEqual(
        await authn(device, device, secret, 'wrong-shared-secret'),
        denied,
        'wrong shared secret',
      );
      assert.deepEqual(await emqx('authn', '{"clientid":'), denied, 'not JSON');
      assert.deepEqual(await emqx('authn', { clientid: device }), denied, 'fields missing');
    });

    it('lets a device publish on its own channels and subscribe to its commands, nothing else', async () => {
      for (const ch of ['telemetry', 'event', 'snapshot', 'heartbeat'])
        assert.deepEqual(
          await authz(device, device, `devices/${device}/${ch}`, 'publish'),
          { result: 'allow' },
          ch,
        );
      assert.deepEqual(await authz(device, device, `devices/${device}/command`, 'subscribe'), {
        result: 'allow',
      });
      for (const [topic, action] of [
        [`devices/${goodId(1)}/telemetry`, 'publish'],
        [`devices/${device}/command`, 'publish'],
        [`devices/${device}/other`, 'publish'],
        [`devices/${device}/#`, 'subscribe'],
        ['devices/+/telemetry', 'subscribe'],
        [`devices/${goodId(1)}/command`, 'subscribe'],
        ['#', 'subscribe'],
        [`devices/${device}/telemetry`, 'delete'],
      ])
        assert.deepEqual(
          await authz(device, device, topic, action),
          { result: 'deny' },
          `${action} ${topic}`,
        );
      assert.deepEqual(
        await authz(`${prefix}-u1`, `${prefix}-u1`, `devices/${prefix}-u1/telemetry`, 'publish'),
        { result: 'deny' },
        'unknown device',
      );
      assert.deepEqual(await authz(clientId, service.username, 'devices/anything/command', 'publish'), {
        result: 'allow',
      });
    });

    it('refuses a disabled device at once and lets it in again once enabled', async () => {
      // The registry cache is invalidated through Redis pub/sub.
      assert.equal((await admin('PATCH', `/${toggledId}`, { status: 'disabled' })).status, 200);
      assert.deepEqual(await authn(toggledId, toggledId, secrets.get(toggledId)!), denied, 'disabled device');
      assert.deepEqual(await authz(toggledId, toggledId, `devices/${toggledId}/telemetry`, 'publish'), {
        result: 'deny',
      });
      assert.equal((await admin('PATCH', `/${toggledId}`, { status: 'enabled' })).status, 200);
      assert.deepEqual(await authn(toggledId, toggledId, secrets.get(toggledId)!), {
        result: 'allow',
        is_superuser: false,
      });
    });

    it('answers a connection storm from its cache (one scrypt per device) and counts every answer', async () => {
      const secret = secrets.get(device)!;
      const started = performance.now();
      const storm = await Promise.all(Array.from({ length: 200 }, () => authn(device, device, secret)));
      assert.ok(storm.every((answer) => answer.result === 'allow'));
      const perCall = (performance.now() - started) / 200;
      assert.ok(perCall < 20, `cached authn calls take ${perCall.toFixed(2)} ms each`);

      // What the calls of this describe block add up to.
      for (const [endpoint, result, atLeast] of [
        ['authn', 'allow', 203],
        ['authn', 'deny', 13],
        ['authz', 'allow', 6],
        ['authz', 'deny', 10],
      ] as const) {
        const counted = await metric('dmp_mqtt_auth_total', { endpoint, result });
        assert.ok(
          counted >= atLeast,
          `dmp_mqtt_auth_total{${endpoint},${result}} = ${counted}, expected ≥ ${atLeast}`,
        );
      }
    });

    it('guards the admin API with its token and never shows the secret hash', async () => {
      const anonymous = await fetch(`${mqttApp.baseUrl}/admin/devices/${device}`);
      assert.equal(anonymous.status, 401);
      const wrongToken = await fetch(`${mqttApp.baseUrl}/admin/devices/${device}`, {
        headers: { authorization: 'Bearer not-the-token' },
      });
      assert.equal(wrongToken.status, 401);
      const shown = await admin('GET', `/${device}`);
      assert.equal(shown.status, 200);
      assert.equal(shown.body.tenantId, 't-edge');
      assert.equal('secretHash' in shown.body, false, 'the hash never leaves the registry');
    });
  });

  describe('good and bad traffic mixed: every good message stored, every bad one refused with its reason', () => {
    const goodMessages: Good[] = [];
    let bad: Bad[] = [];
    let heartbeats: Publish[] = [];
    let t0 = 0;
    const elapsed = () => `${((Date.now() - t0) / 1000).toFixed(1)} s`;
    // Phase 2 and after.
    const duplicates: Bad[] = [];
    let flood: Good[] = [];
    let seenBefore: Good;
    let disabledBad: Bad;
    let afterEnabled: Good;
    let early: Good;
    let earlyBad: Bad;
    let floodSeconds = 0;
    // What the store holds once everything settled.
    let expectedGood = new Set<string>();
    let expectedBad: Bad[] = [];
    let rows: DeadRow[] = [];
    let stored = new Set<string>();
    let floodStored: string[] = [];
    let floodRefused: DeadRow[] = [];

    before(() => {
      for (let d = 0; d < GOOD_DEVICES; d++)
        for (let i = 0; i < GOOD_PER_DEVICE; i++) {
          // Every tenth carries an injection string or a unicode edge case as a text value: good data.
          const note = i % 10 === 0 ? pick([...INJECTIONS, ...UNICODE_TEXTS]) : undefined;
          goodMessages.push(good(goodId(d), note === undefined ? {} : { metrics: { temperature: i, note } }));
        }
      bad = generateBad();
      heartbeats = Array.from({ length: 50 }, (_, i) => ({
        topic: `devices/${goodId(i % GOOD_DEVICES)}/heartbeat`,
        payload: Buffer.from(JSON.stringify({ ts: Date.now(), n: i })),
      }));
      const categories = new Map<string, number>();
      for (const b of bad) categories.set(b.category, (categories.get(b.category) ?? 0) + 1);
      console.log(`edge e2e: ${goodMessages.length} good, ${bad.length} bad`, Object.fromEntries(categories));
    });

    it('has over 1,000 bad inputs, each told apart in the store, and no registered device over its bucket', () => {
      // Every bad input is told apart by (topic, content type, payload) in the dead-letter store.
      assert.equal(new Set(bad.map(keyOf)).size, bad.length, 'bad inputs are unique');
      assert.ok(bad.length >= 1_000, `${bad.length} bad inputs`);
      // No registered device but the flood's goes over its bucket: their expected reasons are not rate limits.
      const perDevice = new Map<string, number>();
      for (const m of [...goodMessages, ...bad]) {
        const deviceId = m.topic.split('/')[1] ?? '';
        if (registeredIds.includes(deviceId)) perDevice.set(deviceId, (perDevice.get(deviceId) ?? 0) + 1);
      }
      assert.ok(
        Math.max(...perDevice.values()) < RATE.burst,
        `at most ${Math.max(...perDevice.values())} per device`,
      );
    });

    it('stores every good message of a mix sent as fast as the broker takes it (phase 1)', async () => {
      const phase1: Publish[] = shuffle([...goodMessages, ...bad, ...heartbeats]);
      // Per device, good messages keep their order (shuffle the mix, then restore each device's order).
      const orderByDevice = new Map<string, Good[]>();
      for (const m of goodMessages)
        orderByDevice.set(m.deviceId, [...(orderByDevice.get(m.deviceId) ?? []), m]);
      const cursor = new Map<string, number>();
      const ordered = phase1.map((m) => {
        if (!('messageId' in m && 'deviceId' in m)) return m;
        const g = m as Good;
        const i = cursor.get(g.deviceId) ?? 0;
        cursor.set(g.deviceId, i + 1);
        return orderByDevice.get(g.deviceId)![i];
      });
      t0 = Date.now();
      await publisher!.publishAll(ordered);
      console.log(`edge e2e: phase 1 published in ${elapsed()}`);
      await waitFor(
        'phase 1: every good message in ClickHouse',
        async () => (await storedIds()).size >= goodMessages.length,
        { timeoutMs: 90_000, intervalMs: 500 },
      );
      console.log(`edge e2e: phase 1 stored after ${elapsed()}`);
    });

    it('refuses a device disabled a moment ago, its cached "enabled" notwithstanding', async () => {
      const pub = publisher!;
      // The device was seen (cached as enabled) just before.
      seenBefore = good(toggledId);
      await pub.publish(seenBefore);
      await waitFor(
        `${seenBefore.messageId} stored`,
        async () => (await storedIds()).has(seenBefore.messageId),
        { timeoutMs: 30_000 },
      );
      assert.equal((await admin('PATCH', `/${toggledId}`, { status: 'disabled' })).status, 200);
      // Disabling takes effect within a second: the registry that the ingest path asks says so.
      await waitFor(
        'the registry to refuse the disabled device',
        async () => (await authn(toggledId, toggledId, secrets.get(toggledId)!)).result === 'deny',
        { timeoutMs: 1_000, intervalMs: 50 },
      );
      const whileDisabled = good(toggledId);
      disabledBad = { ...whileDisabled, category: 'disabled device', expected: RejectCode.UnknownDevice };
      await pub.publish(whileDisabled);
      await waitFor('the disabled device refused', async () =>
        (await deadLetters()).some((r) => rowKey(r) === keyOf(disabledBad)),
      );
      assert.equal((await admin('PATCH', `/${toggledId}`, { status: 'enabled' })).status, 200);
      await waitFor(
        'the registry to accept the enabled device',
        async () => (await authn(toggledId, toggledId, secrets.get(toggledId)!)).result === 'allow',
        { timeoutMs: 1_000, intervalMs: 50 },
      );
      console.log(`edge e2e: disabled device refused after ${elapsed()}`);
    });

    it('takes duplicates, a flood over the bucket and a not-yet-registered device, whose dead letter the CLI replays (phase 2)', async () => {
      const pub = publisher!;
      for (const original of shuffle([...goodMessages]).slice(0, 50))
        duplicates.push({ ...original, category: 'duplicates (message id)', expected: RejectCode.Duplicate });
      for (const original of shuffle(goodMessages.filter((m) => m.contentType !== PROTOBUF)).slice(0, 30)) {
        // Same content (kind, ts, seq, metrics) under a new message id.
        const body = {
          messageId: `${original.messageId}-again`,
          ts: original.ts,
          seq: original.seq,
          metrics: original.metrics,
        };
        duplicates.push({
          topic: original.topic,
          payload: Buffer.from(JSON.stringify(body)),
          category: 'duplicates (content)',
          expected: RejectCode.Duplicate,
        });
      }
      flood = Array.from({ length: FLOOD }, () => good(floodId, { format: 'json' }));
      afterEnabled = good(toggledId);
      // A device that sends before it is registered: refused; registered; its dead letter replayed (CLI).
      early = good(lateId, { format: 'json' });
      earlyBad = { ...early, category: 'not registered yet', expected: RejectCode.UnknownDevice };

      const t1 = Date.now();
      await Promise.all([
        pub.publishAll(shuffle([...duplicates])),
        pub.publishAll(flood),
        pub.publish(afterEnabled),
        pub.publish(early),
      ]);
      floodSeconds = (Date.now() - t1) / 1000;

      const deadRow = await waitFor('the early message dead-lettered', async () =>
        (await deadLetters()).find((r) => rowKey(r) === keyOf(earlyBad)),
      );
      const cli = (...args: string[]) =>
        execFileAsync(process.execPath, [join(REPO_ROOT, 'dist/tools/cli/src/main.js'), ...args], {
          env: {
            ...process.env,
            DMP_ADMIN_URL: mqttApp.baseUrl,
            ADMIN_TOKEN: adminToken,
            CLICKHOUSE_DATABASE: database,
            MQTT_SERVICE_USERNAME: service.username,
            MQTT_SERVICE_PASSWORD: service.password,
          },
        });
      const registered = await cli('devices', 'register', lateId, '--tenant', 't-edge');
      assert.equal(
        (JSON.parse(registered.stdout) as { device: { deviceId: string } }).device.deviceId,
        lateId,
      );
      const listed = await cli(
        'dead-letters',
        'list',
        '--device',
        lateId,
        '--code',
        RejectCode.UnknownDevice,
        '--since',
        '10m',
      );
      assert.match(listed.stdout, new RegExp(deadRow.message_id));
      const replayed = await cli('dead-letters', 'replay', '--id', deadRow.message_id);
      assert.match(replayed.stdout, new RegExp(`replayed ${deadRow.message_id}`));
      console.log(`edge e2e: replayed after ${elapsed()}`);
    });

    it('settles: every good message stored, every bad one dead-lettered, every flood message one or the other', async () => {
      expectedGood = new Set([...goodMessages, seenBefore, afterEnabled, early].map((m) => m.messageId));
      expectedBad = [...bad, ...duplicates, disabledBad, earlyBad];
      const floodKeys = new Set(flood.map(keyOf));
      await waitFor(
        'every good message stored and every bad one dead-lettered',
        async () => {
          [rows, stored] = await Promise.all([deadLetters(), storedIds()]);
          const refused = new Set(rows.filter((r) => r.error_code === RejectCode.RateLimited).map(rowKey));
          const floodSettled = flood.filter((m) => stored.has(m.messageId) || refused.has(keyOf(m))).length;
          return (
            [...expectedGood].every((id) => stored.has(id)) &&
            rows.length >= expectedBad.length &&
            floodSettled === FLOOD
          );
        },
        { timeoutMs: 90_000, intervalMs: 1_000 },
      );
      const floodIds = new Set(flood.map((m) => m.messageId));
      floodStored = [...stored].filter((id) => floodIds.has(id));
      floodRefused = rows.filter((r) => floodKeys.has(rowKey(r)));
      console.log(`edge e2e: settled after ${elapsed()}`);
    });

    it('dead-letters each bad input exactly once, with its expected reason and its raw payload', () => {
      const byKey = new Map<string, DeadRow[]>();
      for (const row of rows) byKey.set(rowKey(row), [...(byKey.get(rowKey(row)) ?? []), row]);
      const wrong: string[] = [];
      for (const b of expectedBad) {
        const found = byKey.get(keyOf(b)) ?? [];
        const codes = found.map((r) => r.error_code);
        if (codes.length !== 1 || codes[0] !== b.expected)
          wrong.push(
            `${b.category}: ${b.topic} (${b.payload.length} bytes) expected ${b.expected}, got [${codes.join(', ')}]`,
          );
      }
      assert.deepEqual(wrong.slice(0, 20), [], `${wrong.length} bad input(s) not refused as expected`);
    });

    it('stores exactly the good messages (and what the flood got through), nothing else of the run', () => {
      const floodIds = new Set(flood.map((m) => m.messageId));
      const unexpected = [...stored].filter((id) => !floodIds.has(id) && !expectedGood.has(id));
      const missing = [...expectedGood].filter((id) => !stored.has(id));
      assert.deepEqual(
        { unexpected, missing },
        { unexpected: [], missing: [] },
        'telemetry_raw holds exactly the good messages',
      );
    });

    it("stores the flood up to the device's bucket and refuses the rest as rate-limited, none both", () => {
      assert.ok(floodRefused.every((r) => r.error_code === RejectCode.RateLimited));
      assert.equal(
        floodRefused.length + floodStored.length,
        FLOOD,
        'every flood message stored or refused, once',
      );
      const allowedAtMost = RATE.burst + Math.ceil(RATE.perSecond * (floodSeconds + 2));
      assert.ok(floodStored.length <= allowedAtMost, `${floodStored.length} flood messages got through`);
      assert.ok(
        floodRefused.length >= FLOOD - allowedAtMost,
        `${floodRefused.length} flood messages refused`,
      );
    });

    it('dead-letters nothing of the run that was not a bad input or the flood, and no heartbeat', () => {
      const known = new Set([...expectedBad.map(keyOf), ...flood.map(keyOf)]);
      assert.deepEqual(
        rows.filter((r) => !known.has(rowKey(r))).map((r) => `${r.error_code} ${r.source_topic}`),
        [],
      );
      assert.equal(rows.filter((r) => r.source_topic.endsWith('/heartbeat')).length, 0);
    });

    it('counts every refusal by reason, in agreement with the dead-letter store', async () => {
      const expectedByReason = new Map<string, number>();
      for (const b of expectedBad)
        expectedByReason.set(b.expected, (expectedByReason.get(b.expected) ?? 0) + 1);
      expectedByReason.set(RejectCode.RateLimited, floodRefused.length);
      for (const [reason, expected] of expectedByReason) {
        const rejected = await metric('dmp_mqtt_rejected_total', { reason });
        const deadLettered = await metric('dmp_mqtt_dead_lettered_total', { reason });
        // At least this run's (other traffic on the shared broker may add to them).
        assert.ok(rejected >= expected, `${reason}: ${rejected} counted, ${expected} expected`);
        assert.ok(deadLettered >= rejected, `${reason}: ${deadLettered} dead-lettered, ${rejected} refused`);
        const [{ stored: inStore } = { stored: '0' }] = await query<{ stored: string }>(
          `SELECT count() AS stored FROM ${database}.dead_letters FINAL
           WHERE source_instance = '${clientId}' AND error_code = '${reason}'`,
        );
        const counted = await metric('dmp_mqtt_rejected_total', { reason });
        assert.ok(
          Number(inStore) >= expected && Number(inStore) <= counted,
          `${reason}: ${inStore} in store, ${rejected}..${counted} counted`,
        );
      }
      assert.ok((await metric('dmp_mqtt_filtered_total', { reason: RejectCode.Heartbeat })) >= 50);
      assert.ok((await metric('dmp_mqtt_dedup_hits_total')) >= duplicates.length);
      assert.ok((await metric('dmp_mqtt_rate_limit_hits_total')) >= floodRefused.length);
    });

    it('stores injection strings and unicode text values intact, byte for byte', async () => {
      const withNotes = goodMessages.filter((m) => typeof m.metrics.note === 'string');
      const texts = await query<{ message_id: string; text_names: string[]; text_values: string[] }>(
        `SELECT message_id, text_names, text_values FROM ${database}.telemetry_raw FINAL
         WHERE device_id LIKE '${prefix}-g%' AND has(text_names, 'note')`,
      );
      const noteById = new Map(texts.map((r) => [r.message_id, r.text_values[r.text_names.indexOf('note')]]));
      for (const m of withNotes) assert.equal(noteById.get(m.messageId), m.metrics.note, m.messageId);
    });

    it('leaves the three apps healthy', async () => {
      await assertHealthy();
      console.log(
        `edge e2e: ${expectedGood.size} good stored, ${expectedBad.length} bad refused as expected, flood ${floodStored.length} through / ${floodRefused.length} refused`,
      );
    });
  });

  describe('a flood of refused messages cannot starve good traffic', () => {
    const flood: Publish[] = [];
    const sentGood = new Set<string>();
    const unknown = { reason: RejectCode.UnknownDevice };
    const counters = () =>
      Promise.all([
        metric('dmp_mqtt_rejected_total', unknown),
        metric('dmp_mqtt_dead_lettered_total', unknown),
        metric('dmp_mqtt_dead_letter_batch_messages_sum'),
        metric('dmp_mqtt_dead_letter_batch_messages_count'),
        metric('dmp_mqtt_dead_letter_failures_total', { kind: 'refused' }),
      ]).then(([rejected, deadLettered, lettered, sends, refused]) => ({
        rejected,
        deadLettered,
        lettered,
        sends,
        refused,
      }));
    let countedBefore: Awaited<ReturnType<typeof counters>>;
    let t0 = 0;
    let publishedMs = 0;
    let goodMs = 0;
    let rows: DeadRow[] = [];

    before(async () => {
      for (let d = 0; d < UNKNOWN_DEVICES; d++)
        for (let i = 0; i < UNKNOWN_PER_DEVICE; i++) {
          const deviceId = unknownId(d);
          flood.push({
            topic: `devices/${deviceId}/telemetry`,
            payload: Buffer.from(JSON.stringify(validBody(random() < 0.5 ? deviceId : undefined))),
          });
        }
      assert.equal(new Set(flood.map(keyOf)).size, flood.length, 'flood payloads are unique');
      const goodMessages: Good[] = [];
      for (let d = 0; d < GOOD_DURING_FLOOD_DEVICES; d++)
        for (let i = 0; i < GOOD_DURING_FLOOD_PER_DEVICE; i++) goodMessages.push(good(goodId(d)));
      // Spread the good messages through the flood, each device's in order.
      const nextGood = [...goodMessages];
      const mixed = shuffle<Publish | undefined>([...flood, ...goodMessages.map(() => undefined)]).map(
        (m) => m ?? nextGood.shift()!,
      );
      for (const m of mixed) if ('messageId' in m) sentGood.add((m as Good).messageId);
      assert.equal(sentGood.size, GOOD_DURING_FLOOD_DEVICES * GOOD_DURING_FLOOD_PER_DEVICE);

      countedBefore = await counters();
      t0 = Date.now();
      await publisher!.publishAll(mixed);
      publishedMs = Date.now() - t0;
      console.log(
        `edge e2e: flood of ${flood.length} refused + ${sentGood.size} good published in ${publishedMs} ms`,
      );
    });

    it(`stores every good message sent during the flood within ${GOOD_WITHIN_MS / 1000} s`, async () => {
      // Good traffic is not held behind the flood's dead letters.
      await waitFor(
        () => `every good message sent during the flood stored within ${GOOD_WITHIN_MS} ms`,
        async () => {
          const stored = await storedIds();
          return [...sentGood].every((id) => stored.has(id));
        },
        { timeoutMs: GOOD_WITHIN_MS, intervalMs: 250 },
      );
      goodMs = Date.now() - t0;
      console.log(`edge e2e: flood: every good message stored ${goodMs} ms after the first publish`);
      assert.ok(goodMs <= GOOD_WITHIN_MS + publishedMs);
    });

    it('dead-letters every refused message exactly once, with its raw payload, in batch entries', async () => {
      const floodRows = () =>
        query<DeadRow>(
          `SELECT message_id, error_code, source_topic, content_type, payload, device_id, source
           FROM ${database}.dead_letters FINAL
           WHERE source_instance = '${clientId}' AND device_id LIKE '${prefix}-x%'`,
        );
      rows = await waitFor(
        'every flood message in dead_letters',
        async () => {
          const found = await floodRows();
          return found.length >= flood.length ? found : undefined;
        },
        { timeoutMs: 60_000, intervalMs: 1_000 },
      );
      console.log(`edge e2e: flood: every refused message in dead_letters after ${Date.now() - t0} ms`);
      assert.equal(rows.length, flood.length, 'each refused message once');
      assert.deepEqual(
        new Set(rows.map(rowKey)),
        new Set(flood.map(keyOf)),
        'the raw payloads, byte for byte',
      );
      assert.ok(rows.every((r) => r.error_code === RejectCode.UnknownDevice && r.source === 'dmp-mqtt'));
      assert.ok(
        rows.every((r) => /\.\d+$/.test(r.message_id)),
        'each row is an entry of a batch: <RocketMQ id>.<n>',
      );
    });

    it('counts them and packs them into far fewer RocketMQ sends, none refused', async () => {
      const after = await counters();
      // At least this run's: other traffic on the shared broker reaches this dmp-mqtt too (devices/#).
      assert.ok(
        after.rejected - countedBefore.rejected >= flood.length,
        `${after.rejected - countedBefore.rejected} counted`,
      );
      assert.ok(after.deadLettered - countedBefore.deadLettered >= flood.length);
      assert.equal(after.refused - countedBefore.refused, 0, 'RocketMQ refused no dead letter');
      const batches = new Set(rows.map((r) => r.message_id.replace(/\.\d+$/, ''))).size;
      const lettered = after.lettered - countedBefore.lettered;
      const sends = after.sends - countedBefore.sends;
      console.log(
        `edge e2e: flood: ${flood.length} refused messages in ${batches} RocketMQ messages; ` +
          `${lettered.toFixed(0)} dead letters in ${sends} sends (${(lettered / sends).toFixed(1)} per send)`,
      );
      // How many share a send depends on how fast they arrive against a send's round trip: only "packed".
      assert.ok(batches < flood.length, `${batches} RocketMQ messages for ${flood.length} dead letters`);
    });

    it('leaves nothing waiting in the dead-letter queue, and the apps healthy', async () => {
      await waitFor('the dead-letter queue empty', async () => {
        const waiting =
          (await metric('dmp_mqtt_dead_letter_queued')) + (await metric('dmp_mqtt_dead_letter_in_flight'));
        return waiting === 0;
      });
      await assertHealthy();
    });
  });
});
