/**
 * The whole chain against the real local stack: simulated devices → Mosquitto → dmp-mqtt → dmp-kernel
 * → RocketMQ → dmp-data → ClickHouse, with one OpenTelemetry trace per message in Jaeger.
 */
import { createClient } from '@clickhouse/client';
import { MultiTopicSimpleConsumer } from '@dmp/messaging';
import type { MessageView } from 'rocketmq-client-nodejs';
import {
  createRocketmqResources,
  dropDatabaseInBackground,
  freePort,
  getJaegerTrace,
  inQueueOrder,
  receivedTelemetry,
  servicesOf,
  silentClientLogger,
  stack,
  startApps,
  waitFor,
  type JaegerTrace,
  type ReceivedTelemetry,
  type RunningApp,
} from '@dmp/testing';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { DeviceFleet } from '../tools/simulator/src/device-fleet';

const run = randomBytes(3).toString('hex');
const database = `dmp_test_chain_${run}`;
const DEVICES = 1_000;
/** dmp-data consumes the shared topics: rows of earlier runs' leftovers may land here too. */
const ours = `WHERE device_id LIKE 'chain-${run}-%'`;
const MESSAGES = 10_000;
const adminToken = `chain-${run}-admin`;

describe('the chain, end to end', () => {
  const apps: RunningApp[] = [];
  const clickhouse = createClient({ url: stack.clickhouse.url, database: 'default' });
  // Reads what dmp-kernel produced through a group of its own. Order is checked from the queue offsets
  // and pack positions afterwards (a device's messages all sit in one queue), so the receives may run
  // concurrently.
  const telemetryTopics = [stack.rocketmq.topics.event, stack.rocketmq.topics.snapshot];
  const observer = new MultiTopicSimpleConsumer({
    endpoints: stack.rocketmq.endpoints,
    namespace: stack.rocketmq.namespace,
    consumerGroup: 'dmp_chain_observer',
    subscriptions: new Map(telemetryTopics.map((topic) => [topic, '*'])),
    awaitDuration: 5_000, // the proxy long-polls at least 5 s
    logger: silentClientLogger,
  });

  /**
   * Receives and acknowledges from both topics, four receives per topic at a time, until `done()` or,
   * with `idleReceives`, until each receive loop came back empty that many times in a row.
   */
  async function observe(
    onMessage: (message: MessageView) => void,
    { done = () => false, idleReceives = Infinity },
  ) {
    const loop = async (topic: string) => {
      for (let idle = 0; idle < idleReceives && !done();) {
        const messages = await observer.receiveFrom(topic, 32, 60_000);
        await Promise.all(messages.map((message) => observer.ack(message)));
        messages.forEach(onMessage);
        idle = messages.length === 0 ? idle + 1 : 0;
      }
    };
    await Promise.all(telemetryTopics.flatMap((topic) => [1, 2, 3, 4].map(() => loop(topic))));
  }

  const fleet = new DeviceFleet({
    url: stack.mqtt.url,
    devices: DEVICES,
    rate: 2_000,
    deviceIdPrefix: `chain-${run}`,
    // A snapshot per device every 3 s: all of them within the run (≈ 2,300 msg/s, 10,000 messages in
    // ≈ 4.3 s), so every device sends. Change events pick devices at random: at 60 (every 5 s) the last
    // ≈ 100 devices had only those, and one of them now and then got none.
    timeCompression: 100,
    heartbeatIntervalMs: 0,
    protobufRatio: 0.2,
    traceRatio: 0.02,
  });

  before(async () => {
    await createRocketmqResources({
      // An observer of dmp-kernel's output; the topics are DMP's own (docker/rocketmq/topics.txt).
      groups: { dmp_chain_observer: 'concurrently' },
    });
    const common = { CLICKHOUSE_DATABASE: database, OTEL_TRACES_SAMPLE_RATIO: '1', LOG_LEVEL: 'warn' };
    const kernelGrpc = `127.0.0.1:${await freePort()}`;
    // Side by side: dmp-mqtt's /health does not wait for dmp-kernel, nor dmp-kernel for dmp-data.
    apps.push(
      ...(await startApps([
        ['dmp-data', { ...common }, { label: `chain-${run}-dmp-data` }],
        ['dmp-kernel', { ...common, KERNEL_GRPC_URL: kernelGrpc }, { label: `chain-${run}-dmp-kernel` }],
        [
          'dmp-mqtt',
          {
            ...common,
            KERNEL_GRPC_URL: kernelGrpc,
            MQTT_SHARE_GROUP: `chain${run}`,
            MQTT_CLIENT_ID: `chain-${run}`,
            ADMIN_TOKEN: adminToken,
            MQTT_AUTH_HTTP_SECRET: randomBytes(24).toString('hex'),
          },
          { label: `chain-${run}-dmp-mqtt` },
        ],
      ])),
    );
    // Registering 1,000 devices (a scrypt hash each) and skipping what the observer's group kept from
    // earlier runs both take a while, and neither needs the other: side by side.
    await Promise.all([
      forEachDevice('POST', (deviceId) => ({ deviceId, tenantId: 't-chain' })),
      (async () => {
        await observer.startup();
        // The group keeps what earlier runs left in the topics: skip it.
        await observe(() => undefined, { idleReceives: 2 });
      })(),
    ]);
    await fleet.connect();
  });

  /** Registers or removes the fleet's devices through dmp-mqtt's admin API, 50 requests at a time. */
  async function forEachDevice(method: 'POST' | 'DELETE', body?: (deviceId: string) => unknown) {
    const mqttApp = apps.find((app) => app.name === 'dmp-mqtt')!;
    const ids = fleet.devices.map((device) => device.id);
    for (let i = 0; i < ids.length; i += 50)
      await Promise.all(
        ids.slice(i, i + 50).map(async (deviceId) => {
          const response = await fetch(
            `${mqttApp.baseUrl}/admin/devices${method === 'DELETE' ? `/${deviceId}` : ''}`,
            {
              method,
              headers: { authorization: `Bearer ${adminToken}`, 'content-type': 'application/json' },
              ...(body ? { body: JSON.stringify(body(deviceId)) } : {}),
            },
          );
          assert.ok(response.ok, `${method} device ${deviceId}: ${response.status} ${await response.text()}`);
        }),
      );
  }

  after(async () => {
    await forEachDevice('DELETE').catch(() => undefined);
    await fleet.close();
    await Promise.all(apps.reverse().map((app) => app.stop()));
    await observer.shutdown().catch(() => undefined);
    dropDatabaseInBackground(database);
    await clickhouse.close();
  });

  it(`stores exactly ${MESSAGES} rows for ${MESSAGES} messages from ${DEVICES} devices, in per-device order, one trace per message`, async () => {
    const stats = await fleet.run({ count: MESSAGES, flushTimeoutMs: 60_000 });
    assert.equal(stats.sent, MESSAGES);
    assert.equal(stats.acked, MESSAGES, 'the broker acknowledged every publish');

    const sent = [...fleet.ledger.values()].flat();
    assert.equal(sent.length, MESSAGES);
    assert.equal(new Set(sent.map((m) => m.deviceId)).size, DEVICES);

    // Per-device order at RocketMQ: in each topic, a device's messages follow its seq in queue order.
    // Other tests share these topics, some with deliberately malformed bodies: skip what isn't ours.
    const perDevice = new Map<string, ReceivedTelemetry[]>();
    const observed = new Set<string>();
    let packs = 0;
    const deadline = Date.now() + 120_000;
    await observe(
      (message) => {
        const mine = receivedTelemetry(message).filter((r) =>
          r.telemetry.deviceId.startsWith(`chain-${run}`),
        );
        if (mine.length > 0) packs++;
        for (const received of mine) {
          observed.add(received.telemetry.messageId);
          const key = `${message.topic} ${received.telemetry.deviceId}`;
          perDevice.set(key, [...(perDevice.get(key) ?? []), received]);
        }
      },
      { done: () => observed.size >= MESSAGES || Date.now() > deadline },
    );
    assert.equal(observed.size, MESSAGES, 'RocketMQ holds every message (within 2 minutes)');
    assert.ok(packs < MESSAGES, `device messages travel packed (${packs} RocketMQ messages)`);
    // At least once: a message redelivered (e.g. after dmp-mqtt's MQTT session reconnected) may repeat;
    // a repeat is no reordering. Every first copy must come in seq order.
    const outOfOrder = [...perDevice].flatMap(([key, list]) => {
      const seen = new Set<string>();
      const firsts = list.sort(inQueueOrder).filter((r) => {
        const first = !seen.has(r.telemetry.messageId);
        seen.add(r.telemetry.messageId);
        return first;
      });
      return firsts.flatMap((r, i) => {
        const before = firsts[i - 1];
        return before && (r.telemetry.seq ?? -1) <= (before.telemetry.seq ?? -1)
          ? [
              `${key}: seq ${r.telemetry.seq} at ${r.view.offset}.${r.index} after seq ${before.telemetry.seq} at ${before.view.offset}.${before.index}`,
            ]
          : [];
      });
    });
    assert.deepEqual(outOfOrder, []);

    const count = async () => {
      const result = await clickhouse.query({
        query: `SELECT count() AS rows, uniqExact(message_id) AS ids FROM ${database}.telemetry_raw FINAL ${ours}`,
        format: 'JSONEachRow',
      });
      const [row] = await result.json<{ rows: string; ids: string }>();
      return { rows: Number(row?.rows), ids: Number(row?.ids) };
    };
    let progress = { rows: 0, ids: 0 };
    await waitFor(
      () => `every message in ClickHouse (${progress.rows} rows)`,
      async () => (progress = await count()).rows >= MESSAGES,
      {
        timeoutMs: 240_000,
        intervalMs: 1_000,
      },
    );
    assert.deepEqual(await count(), { rows: MESSAGES, ids: MESSAGES });

    const stored = await clickhouse.query({
      query: `SELECT message_id FROM ${database}.telemetry_raw FINAL ${ours}`,
      format: 'JSONEachRow',
    });
    const storedIds = new Set((await stored.json<{ message_id: string }>()).map((r) => r.message_id));
    assert.deepEqual(
      sent.filter((m) => !storedIds.has(m.messageId!)).map((m) => m.messageId),
      [],
      'no sent message is missing',
    );

    // One trace per message: a device that sent a traceparent finds every hop in that one trace; the
    // RocketMQ message (pack) that carried it is a trace of its own, linked from the message's hops.
    const traced = sent.filter((m) => m.traceparent);
    assert.ok(traced.length > 0, 'some messages carried a traceparent');
    const sample = traced[Math.floor(Math.random() * traced.length)];
    const traceId = sample.traceparent!.split('-')[1];
    const expectedSpans = [
      (name: string) => name.startsWith('receive devices/'),
      (name: string) => name.startsWith('process devices/'),
      (name: string) => name === 'process kernel.ingest',
      (name: string) => name.startsWith('create dmp_telemetry_'),
      (name: string) => name === 'INSERT telemetry_raw',
    ];
    // The kernel's rule consumer has process spans of that name too: wait for dmp-data's own.
    const dataProcessSpan = (trace: JaegerTrace) =>
      trace.spans.find(
        (span) =>
          span.operationName.startsWith('process dmp_telemetry_') &&
          trace.processes[span.processID]?.serviceName === 'dmp-data',
      );
    const trace = await waitFor(
      `trace ${traceId} with every hop in Jaeger`,
      async () => {
        const found = await getJaegerTrace(traceId);
        const names = found?.spans.map((span) => span.operationName) ?? [];
        return found && expectedSpans.every((matches) => names.some(matches)) && dataProcessSpan(found)
          ? found
          : undefined;
      },
      { timeoutMs: 60_000, intervalMs: 1_000 },
    );
    assert.deepEqual([...servicesOf(trace)].sort(), ['dmp-data', 'dmp-kernel', 'dmp-mqtt']);
    assert.ok(trace.spans.every((span) => span.traceID === traceId));
    // dmp-data's process span of the message links to the pack's process span, in the pack's trace
    // with the kernel's send and dmp-data's receive.
    const process = dataProcessSpan(trace);
    const link = process?.references.find((r) => r.refType === 'FOLLOWS_FROM' && r.traceID !== traceId);
    assert.ok(link, "the message's process span links to its pack");
    const pack = await waitFor(
      `the pack's trace ${link.traceID}`,
      async () => {
        const found = await getJaegerTrace(link.traceID);
        const names = found?.spans.map((span) => span.operationName) ?? [];
        // The linked (pack) process span ends after the ack: the last of them to reach Jaeger.
        return ['send dmp_telemetry_', 'receive dmp_telemetry_'].every((prefix) =>
          names.some((name) => name.startsWith(prefix)),
        ) && found?.spans.some((span) => span.spanID === link.spanID)
          ? found
          : undefined;
      },
      { timeoutMs: 30_000, intervalMs: 1_000 },
    );
    assert.ok(pack.spans.some((span) => span.spanID === link.spanID));

    for (const app of apps)
      assert.equal((await fetch(`${app.baseUrl}/health`)).status, 200, `${app.name} is healthy`);
  });
});
