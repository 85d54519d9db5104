/**
 * Several independent brokers, devices partitioned between them (docs/adr/0008): the stack's Mosquitto
 * and a second one of this test's own. dmp-mqtt consumes from both (MQTT_URLS), dmp-kernel sends
 * linkage commands through both; everything is stored once; a broker that stops leaves the other's
 * devices flowing, and its own devices' messages arrive once it is back.
 */
import { createClient } from '@clickhouse/client';
import {
  extraMosquitto,
  freePort,
  readMetric,
  stack,
  startApp,
  waitFor,
  type ExtraMosquitto,
  type RunningApp,
} from '@dmp/testing';
import mqtt, { type MqttClient } from 'mqtt';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';

const run = randomBytes(3).toString('hex');
const database = `dmp_test_brokers_${run}`;
const adminToken = `brokers-${run}-admin-token`;
const DEVICES_PER_BROKER = 10;
const MESSAGES_PER_ROUND = 5;
const ours = `WHERE device_id LIKE 'brokers-${run}-%'`;

interface Device {
  id: string;
  broker: 'a' | 'b';
  client: MqttClient;
  commands: { commandId: string; ruleId: string }[];
  sent: string[];
}

interface BrokerHealth {
  broker: string;
  up: boolean;
  clientId: string;
}

describe('independent brokers, devices partitioned between them', () => {
  const apps: RunningApp[] = [];
  const devices: Device[] = [];
  const clickhouse = createClient({ url: stack.clickhouse.url, database: 'default' });
  let dir = '';
  let second: ExtraMosquitto;
  let mqttApp: RunningApp;
  let kernel: RunningApp;
  const addressOf = (url: string) => new URL(url).host;

  async function brokerHealth(): Promise<{ status: number; brokers: BrokerHealth[] }> {
    const response = await fetch(`${mqttApp.baseUrl}/health`);
    const body = (await response.json()) as {
      details: { mqtt?: { brokers?: BrokerHealth[] } };
    };
    return { status: response.status, brokers: body.details.mqtt?.brokers ?? [] };
  }

  async function brokerUp(url: string): Promise<boolean | undefined> {
    return (await brokerHealth()).brokers.find((b) => b.broker === addressOf(url))?.up;
  }

  async function stored(): Promise<{ rows: number; ids: number }> {
    const result = await clickhouse.query({
      query: `SELECT count() AS rows, uniqExact(message_id) AS ids FROM ${database}.telemetry_raw FINAL ${ours}`,
      format: 'JSONEachRow',
    });
    const [row] = await result.json<{ rows: string; ids: string }>();
    return { rows: Number(row?.rows ?? 0), ids: Number(row?.ids ?? 0) };
  }

  async function storedIds(): Promise<Set<string>> {
    const result = await clickhouse.query({
      query: `SELECT message_id FROM ${database}.telemetry_raw FINAL ${ours}`,
      format: 'JSONEachRow',
    });
    return new Set((await result.json<{ message_id: string }>()).map((r) => r.message_id));
  }

  /** Every device of `which` publishes `count` telemetry messages (QoS 1, acknowledged by its broker). */
  async function publishRound(which: Device[], round: string, count = MESSAGES_PER_ROUND): Promise<void> {
    await Promise.all(
      which.map(async (device) => {
        for (let i = 0; i < count; i++) {
          const messageId = `${device.id}-${round}-${i}`;
          await device.client.publishAsync(
            `devices/${device.id}/telemetry`,
            JSON.stringify({ messageId, ts: Date.now(), metrics: { t: i } }),
            { qos: 1 },
          );
          device.sent.push(messageId);
        }
      }),
    );
  }

  async function allStored(which: Device[], what: string): Promise<void> {
    const expected = which.flatMap((d) => d.sent);
    let missing = expected.length;
    await waitFor(
      () => `${what}: ${missing} of ${expected.length} message(s) not in ClickHouse yet`,
      async () => {
        const ids = await storedIds();
        missing = expected.filter((id) => !ids.has(id)).length;
        return missing === 0;
      },
      { timeoutMs: 120_000, intervalMs: 1_000 },
    );
  }

  const onBroker = (broker: 'a' | 'b') => devices.filter((d) => d.broker === broker);

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'dmp-brokers-e2e-'));
    second = await extraMosquitto(`brokers-${run}-mosquitto-b`, join(dir, 'mosquitto-b'));
    await second.start();
    const urls = `${stack.mqtt.url},${second.url}`;

    const rulesDir = join(dir, 'rules');
    await mkdir(rulesDir);
    await writeFile(
      join(rulesDir, 'linkage.yaml'),
      `rules:
  - id: brokers-door-${run}
    when: msg.metrics.door_open == true
    actions:
      - command: { name: light.set, params: { on: true } }
`,
    );

    const common = { CLICKHOUSE_DATABASE: database, LOG_LEVEL: 'warn', MQTT_URLS: urls };
    const kernelGrpc = `127.0.0.1:${await freePort()}`;
    apps.push(await startApp('dmp-data', common, { label: `brokers-${run}-dmp-data` }));
    kernel = await startApp(
      'dmp-kernel',
      {
        ...common,
        KERNEL_GRPC_URL: kernelGrpc,
        KERNEL_RULES_DIR: rulesDir,
        KERNEL_MQTT_CLIENT_ID: `brokers-${run}-kernel`,
      },
      { label: `brokers-${run}-dmp-kernel` },
    );
    apps.push(kernel);
    mqttApp = await startApp(
      'dmp-mqtt',
      {
        ...common,
        KERNEL_GRPC_URL: kernelGrpc,
        MQTT_SHARE_GROUP: `brokers${run}`,
        MQTT_CLIENT_ID: `brokers-${run}`,
        ADMIN_TOKEN: adminToken,
        MQTT_AUTH_HTTP_SECRET: randomBytes(24).toString('hex'),
      },
      { label: `brokers-${run}-dmp-mqtt` },
    );
    apps.push(mqttApp);

    for (const broker of ['a', 'b'] as const)
      for (let i = 0; i < DEVICES_PER_BROKER; i++) {
        const id = `brokers-${run}-dev-${broker}${i}`;
        const response = await fetch(`${mqttApp.baseUrl}/admin/devices`, {
          method: 'POST',
          headers: { authorization: `Bearer ${adminToken}`, 'content-type': 'application/json' },
          body: JSON.stringify({ deviceId: id, tenantId: 't-brokers' }),
        });
        assert.ok(response.ok, `register ${id}: ${response.status} ${await response.text()}`);
        const client = await mqtt.connectAsync(broker === 'a' ? stack.mqtt.url : second.url, {
          protocolVersion: 5,
          clientId: id,
          clean: true,
          reconnectPeriod: 200,
        });
        const device: Device = { id, broker, client, commands: [], sent: [] };
        client.on('message', (_topic, payload) =>
          device.commands.push(JSON.parse(payload.toString()) as Device['commands'][number]),
        );
        await client.subscribeAsync(`devices/${id}/command`, { qos: 1 });
        devices.push(device);
      }
  });

  after(async () => {
    await Promise.all(devices.map((d) => d.client.endAsync(true).catch(() => undefined)));
    await Promise.all(apps.reverse().map((app) => app.stop()));
    await second?.stop();
    await clickhouse.command({ query: `DROP DATABASE IF EXISTS ${database}` }).catch(() => undefined);
    await clickhouse.close();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('consumes from both brokers, each under a client id of its own, and reports each', async () => {
    const health = await waitFor('dmp-mqtt subscribed on both brokers', async () => {
      const h = await brokerHealth();
      return h.brokers.length === 2 && h.brokers.every((b) => b.up) ? h : undefined;
    });
    assert.equal(health.status, 200);
    assert.deepEqual(
      health.brokers.map((b) => [b.broker, b.clientId]),
      [
        [addressOf(stack.mqtt.url), `brokers-${run}`],
        [addressOf(second.url), `brokers-${run}-b1`],
      ],
    );
    for (const url of [stack.mqtt.url, second.url])
      assert.equal(await readMetric(mqttApp.baseUrl, 'dmp_mqtt_broker_up', { broker: addressOf(url) }), 1);
  });

  it("stores every device's messages exactly once, whichever broker it is on", async () => {
    await publishRound(devices, 'r1');
    await allStored(devices, 'both brokers');
    const total = devices.flatMap((d) => d.sent).length;
    assert.deepEqual(await stored(), { rows: total, ids: total });
    for (const url of [stack.mqtt.url, second.url])
      assert.ok(
        (await readMetric(mqttApp.baseUrl, 'dmp_mqtt_process_seconds_count', {
          broker: addressOf(url),
          result: 'acked',
        })) >=
          DEVICES_PER_BROKER * MESSAGES_PER_ROUND,
        `messages acknowledged on ${addressOf(url)}`,
      );
  });

  it("keeps the other broker's devices flowing while one broker is down, and catches up after", async () => {
    await second.stop();
    const during = await waitFor('dmp-mqtt to see the second broker gone', async () => {
      const h = await brokerHealth();
      return h.brokers.find((b) => b.broker === addressOf(second.url))?.up === false ? h : undefined;
    });
    assert.equal(during.status, 200, 'dmp-mqtt stays in service while one broker is consumed from');
    assert.equal(
      await readMetric(mqttApp.baseUrl, 'dmp_mqtt_broker_up', { broker: addressOf(second.url) }),
      0,
    );

    await publishRound(onBroker('a'), 'r2');
    await allStored(onBroker('a'), 'the first broker, the second one down');

    await second.start();
    await waitFor('dmp-mqtt back on the second broker', () => brokerUp(second.url));
    await waitFor('the second broker’s devices reconnected', () =>
      onBroker('b').every((d) => d.client.connected),
    );
    await publishRound(onBroker('b'), 'r2');
    await allStored(onBroker('b'), 'the second broker, back');

    const total = devices.flatMap((d) => d.sent).length;
    assert.equal(total, 2 * 2 * DEVICES_PER_BROKER * MESSAGES_PER_ROUND, 'two rounds on both brokers');
    assert.deepEqual(await stored(), { rows: total, ids: total }, 'each message stored exactly once');
  });

  it('sends a linkage command that reaches the device on either broker, once', async () => {
    const targets = [onBroker('a')[0], onBroker('b')[0]];
    // A command goes to the brokers the kernel is connected to: wait until that is both again.
    await waitFor('the kernel connected to both brokers', async () =>
      (
        await Promise.all(
          [stack.mqtt.url, second.url].map((url) =>
            readMetric(kernel.baseUrl, 'dmp_kernel_mqtt_connected', { broker: addressOf(url) }),
          ),
        )
      ).every((up) => up === 1),
    );
    for (const device of targets)
      await device.client.publishAsync(
        `devices/${device.id}/event`,
        JSON.stringify({ messageId: `${device.id}-door`, ts: Date.now(), metrics: { door_open: true } }),
        { qos: 1 },
      );
    for (const device of targets) {
      const [command] = await waitFor(
        `the command to ${device.id} (broker ${device.broker})`,
        () => (device.commands.length > 0 ? device.commands : undefined),
        { timeoutMs: 60_000, intervalMs: 200 },
      );
      assert.equal(command.ruleId, `brokers-door-${run}`);
    }
    assert.ok(
      (await readMetric(kernel.baseUrl, 'dmp_kernel_commands_total', { result: 'ok' })) >= 2,
      'both commands counted as sent',
    );
    // The command went to both brokers; each device is on one of them and got it from that one.
    for (const device of targets) assert.equal(device.commands.length, 1, `${device.id}: one copy`);
    for (const device of devices.filter((d) => !targets.includes(d)))
      assert.deepEqual(device.commands, [], `${device.id} got no command`);
  });
});
