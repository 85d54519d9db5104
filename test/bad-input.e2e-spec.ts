/**
 * Every hostile input of the catalog (libs/testing bad-inputs.ts, issue #18), once each, between good
 * messages, through the real chain: Mosquitto → dmp-mqtt → dmp-kernel → RocketMQ → dmp-data → ClickHouse.
 * Each must end as its template says — exactly one dead letter with its code, stored once, or never
 * delivered — and every good message sent around them must be stored. dmp-mqtt subscribes as in
 * production (`devices/+/{channel}`), so what it never sees is tested as such.
 *
 * Isolation on the shared stack: its own ClickHouse database, Redis database, share group, client id,
 * RocketMQ topics (dmp_badinput_test_*) and consumer groups, and device ids under a per-run prefix.
 */
import { createClient } from '@clickhouse/client';
import { RejectCode } from '@dmp/contracts';
import {
  BAD_INPUT_TEMPLATES,
  callAdminApi,
  createRocketmqResources,
  freePort,
  stack,
  startApp,
  waitFor,
  type BadInputContext,
  type HostilePublish,
  type RunningApp,
} from '@dmp/testing';
import mqtt, { type MqttClient } from 'mqtt';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, it } from 'node:test';

const run = randomBytes(3).toString('hex');
const prefix = `bad-${run}`;
const database = `dmp_test_badinput_${process.pid}`;
const clientId = `badinput-${run}`;
const adminToken = randomBytes(24).toString('hex');
const redisUrl = `${stack.redis.url.replace(/\/\d*$/, '')}/${1 + (Number.parseInt(run, 16) % 15)}`;
const MAX_PAYLOAD_BYTES = 16 * 1024;
/** dmp-mqtt's MQTT 5 Maximum Packet Size: max(1 MiB, 4 × MQTT_MAX_PAYLOAD_BYTES). */
const MAX_PACKET_BYTES = Math.max(1024 * 1024, 4 * MAX_PAYLOAD_BYTES);
const SENDERS = 8;

const senderId = (i: number) => `${prefix}-s${i}`;
/** A device of an earlier run of this test (`bad-<run>-…`). */
const fromOtherRun = (deviceId: string) => deviceId.startsWith('bad-') && !deviceId.startsWith(`${prefix}-`);
/** Topics a template published a retained message on: cleared afterwards. */
const retainedTopics: string[] = [];
const goodDeviceId = (i: number) => `${prefix}-g${i}`;
const registered = [
  ...Array.from({ length: SENDERS }, (_, i) => senderId(i)),
  ...Array.from({ length: SENDERS }, (_, i) => goodDeviceId(i)),
];

/** How a published message is found in the dead-letter store: topic, content type and raw payload. */
const keyOf = (m: HostilePublish) =>
  `${m.topic}\n${m.properties?.contentType ?? ''}\n${m.payload.toString('base64')}`;
const rowKey = (r: DeadRow) => `${r.source_topic}\n${r.content_type}\n${r.payload}`;

interface DeadRow {
  source: string;
  error_code: string;
  source_topic: string;
  content_type: string;
  payload: string;
  device_id: string;
  source_message_id: string;
}

describe('hostile device inputs: each refused as it should be, nothing good lost', () => {
  const apps: RunningApp[] = [];
  let mqttApp: RunningApp;
  let clients: MqttClient[] = [];
  const clickhouse = createClient({ url: stack.clickhouse.url, database: 'default' });
  const query = async <T>(sql: string): Promise<T[]> =>
    (await clickhouse.query({ query: sql, format: 'JSONEachRow' })).json<T>();

  before(async () => {
    await createRocketmqResources({
      topics: {
        dmp_badinput_test_event: 'FIFO',
        dmp_badinput_test_snapshot: 'FIFO',
        dmp_badinput_test_dead_letter: 'NORMAL',
      },
      groups: { dmp_data_badinput_test: 'orderly', dmp_data_dead_letter_badinput_test: 'concurrently' },
    });
    const common = {
      CLICKHOUSE_DATABASE: database,
      REDIS_URL: redisUrl,
      ROCKETMQ_TOPIC_EVENT: 'dmp_badinput_test_event',
      ROCKETMQ_TOPIC_SNAPSHOT: 'dmp_badinput_test_snapshot',
      ROCKETMQ_TOPIC_DEAD_LETTER: 'dmp_badinput_test_dead_letter',
      OTEL_ENABLED: 'false',
      LOG_LEVEL: 'warn',
    };
    const kernelGrpc = `127.0.0.1:${await freePort()}`;
    const starting = [
      startApp(
        'dmp-data',
        {
          ...common,
          DATA_CONSUMER_GROUP: 'dmp_data_badinput_test',
          DEAD_LETTER_CONSUMER_GROUP: 'dmp_data_dead_letter_badinput_test',
          DATA_BATCH_MAX_WAIT_MS: '200',
          DEAD_LETTER_BATCH_MAX_WAIT_MS: '200',
        },
        { label: `badinput-${run}-dmp-data` },
      ),
      startApp(
        'dmp-kernel',
        { ...common, KERNEL_GRPC_URL: kernelGrpc },
        { label: `badinput-${run}-dmp-kernel` },
      ),
      startApp(
        'dmp-mqtt',
        {
          ...common,
          KERNEL_GRPC_URL: kernelGrpc,
          MQTT_SHARE_GROUP: `badinput${run}`,
          MQTT_CLIENT_ID: clientId,
          MQTT_SESSION_EXPIRY_SECONDS: '60',
          MQTT_MAX_PAYLOAD_BYTES: String(MAX_PAYLOAD_BYTES),
          ADMIN_TOKEN: adminToken,
          MQTT_AUTH_HTTP_SECRET: randomBytes(24).toString('hex'),
          DEVICE_RATE_LIMIT_PER_SECOND: '0',
        },
        { label: `badinput-${run}-dmp-mqtt` },
      ),
    ];
    // Every app that started is stopped in `after`, even when another failed to start.
    const settled = await Promise.allSettled(starting);
    for (const result of settled) if (result.status === 'fulfilled') apps.push(result.value);
    for (const result of settled) if (result.status === 'rejected') throw result.reason;
    mqttApp = apps.find((app) => app.name === 'dmp-mqtt')!;
    console.log(
      `bad-input e2e: run ${run}, database ${database}, logs .stack/logs/tests/badinput-${run}-*.log`,
    );
    await Promise.all(
      registered.map(async (deviceId) => {
        const { status, body } = await callAdminApi(`${mqttApp.baseUrl}/admin/devices`, adminToken, 'POST', {
          deviceId,
          tenantId: 't-bad',
        });
        assert.equal(status, 201, JSON.stringify(body));
      }),
    );
    clients = await Promise.all(
      Array.from({ length: 4 }, (_, i) =>
        mqtt.connectAsync(stack.mqtt.url, {
          protocolVersion: 5,
          clientId: `${prefix}-pub-${i}`,
          clean: true,
        }),
      ),
    );
  });

  after(async () => {
    // Clear the retained messages the templates left, or every later subscriber of device topics gets them.
    await Promise.all(
      retainedTopics.map((topic) =>
        clients[0]?.publishAsync(topic, Buffer.alloc(0), { qos: 1, retain: true }).catch(() => undefined),
      ),
    );
    await Promise.all(clients.map((c) => c.endAsync(true).catch(() => undefined)));
    // Bounded: an app still running 15 s after SIGTERM is killed.
    for (const app of [...apps].reverse()) {
      const timer = setTimeout(() => void app.stop('SIGKILL'), 15_000);
      await app.stop();
      clearTimeout(timer);
    }
    await clickhouse.command({ query: `DROP DATABASE IF EXISTS ${database}` });
    await clickhouse.close();
  });

  it(`ends every one of the ${BAD_INPUT_TEMPLATES.length} templates as it states, and stores every good message around them`, async () => {
    assert.ok(BAD_INPUT_TEMPLATES.length >= 200, `${BAD_INPUT_TEMPLATES.length} templates`);
    const baseTs = Date.now() - 10 * 60_000;
    const cases = BAD_INPUT_TEMPLATES.map((template, i) => {
      const ctx: BadInputContext = {
        device: senderId(i % SENDERS),
        victim: goodDeviceId(i % SENDERS),
        unknown: `${prefix}-u${i}`,
        messageId: `${prefix}-t${i}`,
        ts: baseTs + i * 1_000,
        maxPayloadBytes: MAX_PAYLOAD_BYTES,
        maxPacketBytes: MAX_PACKET_BYTES,
      };
      return { template, ctx, publish: template.build(ctx) };
    });
    const keys = cases.map((c) => keyOf(c.publish));
    assert.equal(new Set(keys).size, keys.length, 'each template is told apart in the dead-letter store');

    // A good message of a good device before and after each template, the sender's own before and after.
    const goodIds: string[] = [];
    let seq = 0;
    const good = (deviceId: string): HostilePublish => {
      const messageId = `${deviceId}-ok${++seq}`;
      goodIds.push(messageId);
      const payload = { messageId, ts: baseTs + seq, seq, metrics: { temperature: seq / 10, ok: true } };
      return { topic: `devices/${deviceId}/telemetry`, payload: Buffer.from(JSON.stringify(payload)) };
    };
    const clientFor = (topic: string) => clients[[...topic].reduce((h, ch) => h + ch.charCodeAt(0), 0) % 4];
    const send = (m: HostilePublish) => {
      if (m.retain) retainedTopics.push(m.topic);
      return clientFor(m.topic).publishAsync(m.topic, m.payload, {
        qos: m.qos ?? 1,
        retain: m.retain ?? false,
        ...(m.properties ? { properties: m.properties } : {}),
      });
    };
    const sendAlone = async (m: HostilePublish, i: number) => {
      const client = await mqtt.connectAsync(stack.mqtt.url, {
        protocolVersion: 5,
        clientId: `${prefix}-own-${i}`,
        reconnectPeriod: 0,
      });
      client.on('error', () => undefined);
      await Promise.race([
        client.publishAsync(m.topic, m.payload, {
          qos: 1,
          ...(m.properties ? { properties: m.properties } : {}),
        }),
        new Promise<void>((resolve) => client.once('close', () => resolve())),
        new Promise((resolve) => setTimeout(resolve, 3_000)),
      ]).catch(() => undefined);
      client.end(true);
    };

    const t0 = Date.now();
    const sends: Promise<unknown>[] = [];
    for (const [i, c] of cases.entries()) {
      const around = goodDeviceId(i % SENDERS);
      sends.push(send(good(around)), send(good(c.ctx.device)));
      sends.push(c.publish.ownConnection ? sendAlone(c.publish, i) : send(c.publish));
      sends.push(send(good(c.ctx.device)), send(good(around)));
    }
    await Promise.all(sends);
    console.log(
      `bad-input e2e: ${cases.length} templates and ${goodIds.length} good messages sent in ${Date.now() - t0} ms`,
    );

    // What should be stored: the good messages and the templates that are valid.
    const storedIdsOf = (c: (typeof cases)[number]) => c.publish.storedAs ?? c.ctx.messageId;
    const expectStored = new Set([
      ...goodIds,
      ...cases.filter((c) => 'stored' in c.template.expected).map(storedIdsOf),
    ]);
    const refusedByEdge = cases.filter(
      (c) => 'refused' in c.template.expected && c.template.expected.by === 'dmp-mqtt',
    );
    const refusedByData = cases.filter(
      (c) => 'refused' in c.template.expected && c.template.expected.by === 'dmp-data',
    );

    const storedRows = () =>
      query<{ message_id: string; n: string }>(
        `SELECT message_id, count() AS n FROM ${database}.telemetry_raw
         WHERE device_id LIKE '${prefix}-%' GROUP BY message_id`,
      );
    const deadRows = () =>
      query<DeadRow>(
        `SELECT source, error_code, source_topic, content_type, payload, device_id, source_message_id
         FROM ${database}.dead_letters FINAL
         WHERE source_instance = '${clientId}' OR device_id LIKE '${prefix}-%'`,
      );
    const storedMap = async () => new Map((await storedRows()).map((r) => [r.message_id, Number(r.n)]));
    await waitFor(
      'every good message stored and every refusal dead-lettered',
      async () => {
        const [s, d] = await Promise.all([storedMap(), deadRows()]);
        return (
          [...expectStored].every((id) => s.has(id)) &&
          d.length >= refusedByEdge.length + refusedByData.length
        );
      },
      { timeoutMs: 60_000, intervalMs: 500 },
    ).catch((error: unknown) => console.log(`bad-input e2e: not settled: ${String(error)}`));
    // Give late arrivals (what should not be there) a moment to show, then read once more.
    await new Promise((resolve) => setTimeout(resolve, 2_000));
    const [stored, dead] = await Promise.all([storedMap(), deadRows()]);
    console.log(
      `bad-input e2e: settled after ${Date.now() - t0} ms: ${stored.size} stored, ${dead.length} dead letters`,
    );

    const edgeByKey = new Map<string, DeadRow[]>();
    for (const r of dead.filter((r) => r.source === 'dmp-mqtt'))
      edgeByKey.set(rowKey(r), [...(edgeByKey.get(rowKey(r)) ?? []), r]);
    const wrong: string[] = [];
    for (const c of cases) {
      const e = c.template.expected;
      const edgeCodes = (edgeByKey.get(keyOf(c.publish)) ?? []).map((r) => r.error_code);
      const dataCodes = dead
        .filter((r) => r.source === 'dmp-data' && r.source_message_id === c.ctx.messageId)
        .map((r) => r.error_code);
      const isStored = stored.has(storedIdsOf(c));
      const got = `edge [${edgeCodes.join(',')}], data [${dataCodes.join(',')}], ${isStored ? 'stored' : 'not stored'}`;
      const ok =
        'stored' in e
          ? isStored && edgeCodes.length === 0 && dataCodes.length === 0
          : 'notDelivered' in e
            ? !isStored && edgeCodes.length === 0 && dataCodes.length === 0
            : e.by === 'dmp-mqtt'
              ? !isStored && edgeCodes.length === 1 && edgeCodes[0] === e.refused && dataCodes.length === 0
              : !isStored && edgeCodes.length === 0 && dataCodes.length === 1 && dataCodes[0] === e.refused;
      if (!ok)
        wrong.push(`${c.template.group} / ${c.template.name}: expected ${JSON.stringify(e)}, got ${got}`);
    }
    assert.deepEqual(wrong, [], `${wrong.length} template(s) did not end as stated`);

    const missing = goodIds.filter((id) => !stored.has(id));
    assert.deepEqual(missing, [], 'every good message sent around the templates is stored');
    const twice = [...stored].filter(([, n]) => n !== 1).map(([id]) => id);
    assert.deepEqual(twice, [], 'each stored once');
    const unexpected = [...stored.keys()].filter((id) => !expectStored.has(id));
    assert.deepEqual(unexpected, [], 'nothing else stored');
    const known = new Set(keys);
    assert.deepEqual(
      dead
        // Retained messages another run left on the broker (it keeps them across restarts) are not ours.
        .filter((r) => r.source === 'dmp-mqtt' && !known.has(rowKey(r)) && !fromOtherRun(r.device_id))
        .map((r) => `${r.error_code} ${r.source_topic}`),
      [],
      'no other dead letter',
    );
    assert.equal(
      dead.filter((r) => r.error_code === RejectCode.RateLimited).length,
      0,
      'the rate limit is off here',
    );
    for (const app of apps)
      assert.equal((await fetch(`${app.baseUrl}/health`)).status, 200, `${app.name} healthy`);
  });
});
