/**
 * dmp-mqtt end to end: the built app as a real process, real Mosquitto, and a real gRPC server on a real
 * port standing in for dmp-kernel (same telemetry.proto) that records what it receives and answers as
 * told. Devices are the simulator's fleet engine, so the test knows exactly what was sent.
 * Each test uses its own share group, client id and device ids.
 */
import {
  type IngestOutcome,
  TELEMETRY_LOADER_OPTIONS,
  TELEMETRY_PROTO_PATH,
  type TelemetryMessage,
} from '@dmp/contracts';
import {
  callAdminApi,
  freePort,
  getJaegerTrace,
  readMetric,
  startApp,
  stack,
  waitFor,
  type RunningApp,
} from '@dmp/testing';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import mqtt from 'mqtt';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { once } from 'node:events';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { DeviceFleet, type SentMessage } from '../tools/simulator/src/device-fleet';

type Answer = (message: TelemetryMessage) => Omit<IngestOutcome, 'messageId'>;
const accept: Answer = () => ({ accepted: true, retryable: false, errorCode: '', errorMessage: '' });
const busy: Answer = () => ({
  accepted: false,
  retryable: true,
  errorCode: 'DMP_ERR_UNAVAILABLE',
  errorMessage: 'RocketMQ is slow',
});

const preceding = {
  accepted: false,
  retryable: true,
  errorCode: 'DMP_ERR_PRECEDING_FAILED',
  errorMessage: 'not sent: an earlier message of this device failed',
};

/** A real gRPC KernelIngest server that records every message it accepted, in arrival order. */
class KernelStandIn {
  /** Messages it answered "accepted" for, in order. */
  readonly accepted: TelemetryMessage[] = [];
  readonly batchSizes: number[] = [];
  answer: Answer = accept;
  delayMs = 0;
  /** How long to hold a call before answering it (default: `delayMs`). */
  delayOf?: (messages: readonly TelemetryMessage[]) => number;
  private server?: grpc.Server;

  private constructor(readonly port: number) {}

  static async start(): Promise<KernelStandIn> {
    const standIn = new KernelStandIn(await freePort());
    await standIn.up();
    return standIn;
  }

  get url(): string {
    return `127.0.0.1:${this.port}`;
  }

  async up(): Promise<void> {
    const definition = protoLoader.loadSync(TELEMETRY_PROTO_PATH, TELEMETRY_LOADER_OPTIONS);
    const loaded = grpc.loadPackageDefinition(definition) as unknown as {
      dmp: { telemetry: { v1: { KernelIngest: grpc.ServiceClientConstructor } } };
    };
    const server = new grpc.Server();
    server.addService(loaded.dmp.telemetry.v1.KernelIngest.service, {
      Ingest: (
        call: grpc.ServerUnaryCall<{ messages: TelemetryMessage[] }, unknown>,
        callback: grpc.sendUnaryData<{ outcomes: IngestOutcome[] }>,
      ) => {
        const { messages } = call.request;
        this.batchSizes.push(messages.length);
        const respond = () => {
          if (call.cancelled) return;
          // As dmp-kernel: a device's messages behind one it could not take are not taken either.
          const failed = new Set<string>();
          const outcomes = messages.map((m) => {
            const outcome = failed.has(m.deviceId)
              ? { messageId: m.messageId, ...preceding }
              : { messageId: m.messageId, ...this.answer(m) };
            if (outcome.accepted) this.accepted.push(m);
            else if (outcome.retryable) failed.add(m.deviceId);
            return outcome;
          });
          callback(null, { outcomes });
        };
        const delay = this.delayOf?.(messages) ?? this.delayMs;
        if (delay > 0) setTimeout(respond, delay);
        else respond();
      },
    });
    await new Promise<void>((resolve, reject) =>
      server.bindAsync(this.url, grpc.ServerCredentials.createInsecure(), (error) =>
        error ? reject(error) : resolve(),
      ),
    );
    this.server = server;
  }

  /** Gone, as if dmp-kernel crashed: connections reset, calls fail. */
  down(): void {
    this.server?.forceShutdown();
    this.server = undefined;
  }

  acceptedFrom(prefix: string): TelemetryMessage[] {
    return this.accepted.filter((m) => m.deviceId.startsWith(prefix));
  }
}

/**
 * A Redis of the test's own, which it may stop and start again: with an append-only file, so that what
 * was registered is still there after the restart (the shared stack's Redis keeps nothing on disk).
 */
class OwnRedis {
  private process?: ChildProcess;

  private constructor(
    readonly port: number,
    private readonly dir: string,
  ) {}

  static async start(): Promise<OwnRedis> {
    const redis = new OwnRedis(await freePort(), await mkdtemp(join(tmpdir(), 'dmp-e2e-redis-')));
    await redis.up();
    return redis;
  }

  get url(): string {
    return `redis://127.0.0.1:${this.port}`;
  }

  async up(): Promise<void> {
    const args = ['--port', String(this.port), '--bind', '127.0.0.1', '--dir', this.dir, '--save', ''];
    const child = spawn('redis-server', [...args, '--appendonly', 'yes', '--appendfsync', 'always'], {
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    this.process = child;
    let output = '';
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => (output += chunk));
    await waitFor(
      () => `Redis on port ${this.port} to accept connections (${output.slice(-300)})`,
      () => child.exitCode === null && /Ready to accept connections/.test(output),
      { timeoutMs: 20_000, intervalMs: 50 },
    );
  }

  /** Stopped (SIGTERM): its clients' connections are refused until `up()`. */
  async down(): Promise<void> {
    const child = this.process;
    this.process = undefined;
    if (!child || child.exitCode !== null) return;
    const exited = once(child, 'exit');
    child.kill('SIGTERM');
    await exited;
  }

  async remove(): Promise<void> {
    await this.down();
    await rm(this.dir, { recursive: true, force: true });
  }
}

const TRACEPARENT = /^00-([0-9a-f]{32})-([0-9a-f]{16})-0[01]$/;

function uniqueName(label: string): string {
  return `e2e-${label}-${randomUUID().slice(0, 8)}`;
}

/** dmp-mqtt as a child process, wired to a stand-in kernel, with its own share group and client id. */
function startMqttApp(
  name: string,
  kernel: KernelStandIn,
  env: Record<string, string> = {},
): Promise<RunningApp> {
  return startApp(
    'dmp-mqtt',
    {
      MQTT_SHARE_GROUP: name,
      MQTT_CLIENT_ID: name,
      // Short: sessions of killed instances stop collecting copies of every device message soon.
      MQTT_SESSION_EXPIRY_SECONDS: '60',
      KERNEL_GRPC_URL: kernel.url,
      // This suite is about transport, decoding and hand-off; the registry, dedup and rate limits
      // have their own suite (edge.e2e-spec.ts).
      ADMIN_TOKEN: `${name}-admin`,
      MQTT_AUTH_HTTP_SECRET: `${name}-auth-http-secret`,
      DEVICE_REGISTRY_REQUIRED: 'false',
      DEVICE_RATE_LIMIT_PER_SECOND: '0',
      OTEL_ENABLED: 'true',
      LOG_LEVEL: 'info',
      ...env,
    },
    { label: name },
  );
}

function idsByDevice(messages: readonly { deviceId: string; messageId?: string }[]): Map<string, string[]> {
  const result = new Map<string, string[]>();
  for (const m of messages) {
    if (m.messageId === undefined) continue;
    result.set(m.deviceId, [...(result.get(m.deviceId) ?? []), m.messageId]);
  }
  return result;
}

/** Every sent message arrived, per device in sending order; repeats (at-least-once) only right after themselves. */
function assertArrivedInOrder(
  sent: Map<string, SentMessage[]>,
  received: TelemetryMessage[],
  { exactlyOnce = true } = {},
) {
  const got = idsByDevice(received);
  for (const [deviceId, messages] of sent) {
    const expected = messages.map((m) => m.messageId!);
    const actual = got.get(deviceId) ?? [];
    const seqOf = (id: string) => Number(id.slice(id.lastIndexOf('-') + 1));
    if (exactlyOnce) {
      assert.deepEqual(actual, expected, `${deviceId}: every message exactly once, in order`);
    } else {
      const firstArrivals = actual.filter((id, i) => actual.indexOf(id) === i);
      assert.deepEqual(firstArrivals, expected, `${deviceId}: every message, in order`);
      for (let i = 1; i < actual.length; i++) {
        assert.ok(
          seqOf(actual[i]) >= seqOf(actual[i - 1]),
          `${deviceId}: ${actual[i]} came back after ${actual[i - 1]}`,
        );
      }
    }
  }
}

async function waitForAll(kernel: KernelStandIn, prefix: string, count: number, timeoutMs = 60_000) {
  await waitFor(
    `${count} messages of ${prefix} at the kernel`,
    () => new Set(kernel.acceptedFrom(prefix).map((m) => m.messageId)).size >= count,
    { timeoutMs, intervalMs: 100 },
  );
}

const countOf = (sent: Map<string, SentMessage[]>) =>
  [...sent.values()].reduce((n, list) => n + list.length, 0);

describe('dmp-mqtt', () => {
  const running: {
    app?: RunningApp;
    kernel?: KernelStandIn;
    fleet?: DeviceFleet;
    raw?: mqtt.MqttClient;
    redis?: OwnRedis;
  }[] = [];
  afterEach(async () => {
    for (const r of running.splice(0)) {
      await r.fleet?.close().catch(() => undefined);
      await r.raw?.endAsync().catch(() => undefined);
      if (r.app && r.app.process.exitCode === null) await r.app.stop('SIGKILL');
      r.kernel?.down();
      await r.redis?.remove();
    }
  });

  /** A kernel stand-in, dmp-mqtt wired to it and a connected fleet without heartbeats, all stopped after the test. */
  async function startScenario(
    label: string,
    fleetOptions: { devices: number; rate: number },
    env: Record<string, string> = {},
  ) {
    const name = uniqueName(label);
    const kernel = await KernelStandIn.start();
    const app = await startMqttApp(name, kernel, env);
    const fleet = new DeviceFleet({
      url: stack.mqtt.url,
      deviceIdPrefix: name,
      heartbeatIntervalMs: 0,
      ...fleetOptions,
    });
    running.push({ app, kernel, fleet });
    await fleet.connect();
    return { name, kernel, app, fleet };
  }

  it('forwards good JSON and Protobuf messages exactly once in per-device order with trace context, and counts bad ones', async () => {
    const name = uniqueName('flow');
    const kernel = await KernelStandIn.start();
    const app = await startMqttApp(name, kernel);
    const fleet = new DeviceFleet({
      url: stack.mqtt.url,
      devices: 25,
      rate: 600,
      connections: 3,
      timeCompression: 600, // snapshots every 0.5 s per device, heartbeats every second
      protobufRatio: 0.3,
      traceRatio: 0.5,
      deviceIdPrefix: name,
    });
    const raw = await mqtt.connectAsync(stack.mqtt.url, { protocolVersion: 5, clientId: `${name}-raw` });
    running.push({ app, kernel, fleet, raw });

    const health = (await (await fetch(`${app.baseUrl}/health`)).json()) as {
      status: string;
      info: Record<string, { status: string }>;
    };
    assert.equal(health.status, 'ok');
    assert.equal(health.info.mqtt?.status, 'up');
    assert.equal(health.info.kernel?.status, 'up');

    await fleet.connect();
    const stats = await fleet.run({ durationMs: 3_000 });
    assert.equal(stats.failed, 0);
    assert.ok(stats.byChannel.snapshot > 0 && stats.byChannel.heartbeat > 0, JSON.stringify(stats.byChannel));

    const bad = `${name}-bad`;
    const good = { messageId: 'x-1', ts: Date.now(), metrics: { t: 1 } };
    const badMessages: [string, string | Buffer, mqtt.IClientPublishOptions['properties'], string][] = [
      [`devices/${bad}/telemetry`, '{"messageId": "x-1", "ts": ', {}, 'DMP_ERR_MALFORMED_PAYLOAD'],
      [
        `devices/${bad}/telemetry`,
        Buffer.from([0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f]),
        { contentType: 'application/x-protobuf' },
        'DMP_ERR_MALFORMED_PAYLOAD',
      ],
      [
        `devices/${bad}/telemetry`,
        JSON.stringify(good),
        { contentType: 'text/csv' },
        'DMP_ERR_MALFORMED_PAYLOAD',
      ],
      [`devices/${bad}/event`, JSON.stringify({ ...good, ts: 'yesterday' }), {}, 'DMP_ERR_INVALID_PAYLOAD'],
      [
        `devices/${bad}/snapshot`,
        JSON.stringify({ ...good, metrics: { 'no spaces': 1 } }),
        {},
        'DMP_ERR_INVALID_PAYLOAD',
      ],
      [
        `devices/${bad}/telemetry`,
        JSON.stringify({ ...good, deviceId: `${name}-000` }),
        {},
        'DMP_ERR_SPOOFED_DEVICE',
      ],
      [
        `devices/${bad}/telemetry`,
        JSON.stringify({ ...good, pad: 'x'.repeat(70_000) }),
        {},
        'DMP_ERR_PAYLOAD_TOO_LARGE',
      ],
      [`devices/${bad}!/telemetry`, JSON.stringify(good), {}, 'DMP_ERR_WRONG_TOPIC'],
    ];
    for (const [topic, payload, properties] of badMessages)
      await raw.publishAsync(topic, payload, { qos: 1, properties });

    const sent = fleet.forwardable();
    await waitForAll(kernel, name, countOf(sent));
    await sleep(500); // let duplicates, if any, show up
    const received = kernel.acceptedFrom(name);
    assertArrivedInOrder(sent, received);
    assert.ok(!received.some((m) => m.deviceId === bad), 'no bad message was forwarded');

    // Trace context: every message carries the process span's; a device's own context is its parent trace.
    const byId = new Map(received.map((m) => [m.messageId, m]));
    let traced = 0;
    for (const message of [...sent.values()].flat()) {
      const forwarded = byId.get(message.messageId!)!;
      const [, traceId, spanId] = TRACEPARENT.exec(forwarded.traceparent) ?? [];
      assert.ok(traceId, `${message.messageId}: traceparent ${forwarded.traceparent}`);
      if (message.traceparent) {
        traced++;
        const [, deviceTraceId, deviceSpanId] = TRACEPARENT.exec(message.traceparent)!;
        assert.equal(traceId, deviceTraceId, 'one trace per message, from the device on');
        assert.notEqual(spanId, deviceSpanId, 'the kernel gets dmp-mqtt’s process span as parent');
      }
    }
    assert.ok(traced > 0);
    assert.deepEqual(new Set(received.map((m) => m.kind)), new Set(['KIND_TELEMETRY', 'KIND_SNAPSHOT']));
    assert.ok(
      Math.max(...kernel.batchSizes) > 1,
      `messages are batched: ${kernel.batchSizes.slice(0, 20).join(',')}`,
    );

    // Bad input: acknowledged (not redelivered: counted once each), by reason.
    await waitFor(
      'the rejections in /metrics',
      async () => (await readMetric(app.baseUrl, 'dmp_mqtt_rejected_total')) >= badMessages.length,
    );
    await sleep(500);
    for (const reason of new Set(badMessages.map((b) => b[3]))) {
      const expected = badMessages.filter((b) => b[3] === reason).length;
      assert.equal(await readMetric(app.baseUrl, 'dmp_mqtt_rejected_total', { reason }), expected, reason);
    }
    const heartbeats = stats.byChannel.heartbeat;
    assert.ok(
      (await readMetric(app.baseUrl, 'dmp_mqtt_filtered_total', { reason: 'DMP_FILTERED_HEARTBEAT' })) >=
        heartbeats,
    );
    assert.ok(
      (await readMetric(app.baseUrl, 'dmp_mqtt_forwarded_total', { kind: 'snapshot' })) >=
        stats.byChannel.snapshot,
    );
    assert.ok(
      (await readMetric(app.baseUrl, 'dmp_mqtt_received_total', { channel: 'heartbeat' })) >= heartbeats,
    );
    assert.ok((await readMetric(app.baseUrl, 'dmp_mqtt_kernel_batch_size_count')) > 0);
    await waitFor(
      'everything acknowledged',
      async () => (await readMetric(app.baseUrl, 'dmp_mqtt_in_flight')) === 0,
    );

    // The spans in Jaeger: device span → receive (CLIENT) → process (CONSUMER) → the kernel's.
    const tracedMessage = [...sent.values()].flat().find((m) => m.traceparent && m.channel === 'telemetry')!;
    const [, traceId, deviceSpanId] = TRACEPARENT.exec(tracedMessage.traceparent!)!;
    const trace = await waitFor(
      `trace ${traceId} in Jaeger`,
      async () => {
        const t = await getJaegerTrace(traceId);
        return t && t.spans.length >= 2 ? t : undefined;
      },
      { timeoutMs: 20_000, intervalMs: 500 },
    );
    const receive = trace.spans.find((s) => s.operationName === 'receive devices/+/telemetry');
    const process = trace.spans.find((s) => s.operationName === 'process devices/+/telemetry');
    assert.ok(receive && process, trace.spans.map((s) => s.operationName).join(', '));
    assert.equal(receive.references[0]?.spanID, deviceSpanId);
    assert.equal(process.references[0]?.spanID, receive.spanID);
    const tag = (span: typeof receive, key: string) => span.tags.find((t) => t.key === key)?.value;
    assert.equal(tag(receive, 'messaging.system'), 'mqtt');
    assert.equal(tag(receive, 'messaging.destination.name'), tracedMessage.topic);
    assert.equal(tag(process, 'messaging.message.id'), tracedMessage.messageId);
    assert.equal(tag(process, 'span.kind'), 'consumer');
    assert.equal(byId.get(tracedMessage.messageId!)!.traceparent.split('-')[2], process.spanID);

    assert.notEqual(await app.stop('SIGTERM'), 1, 'shuts down cleanly on SIGTERM');
  });

  it("hands a device's burst to the kernel several messages per call, up to KERNEL_BATCH_MAX_PER_DEVICE, in order", async () => {
    const { name, kernel, fleet } = await startScenario(
      'burst',
      { devices: 1, rate: 0 },
      { KERNEL_BATCH_MAX_PER_DEVICE: '8' },
    );
    kernel.delayMs = 20; // a round trip long enough for the burst to queue behind it
    const [device] = fleet.devices;
    for (let i = 0; i < 100; i++) fleet.publishChange(device);
    const sent = fleet.forwardable();
    await waitForAll(kernel, name, countOf(sent));
    assertArrivedInOrder(sent, kernel.acceptedFrom(name));
    // One device only: a call's size is how many of its messages went together.
    assert.equal(Math.max(...kernel.batchSizes), 8, `calls: ${kernel.batchSizes.join(',')}`);
    assert.ok(kernel.batchSizes.length <= 25, `${kernel.batchSizes.length} calls for 100 messages`);
  });

  it('loses nothing while dmp-kernel answers "retry" or is down, and keeps per-device order', async () => {
    const { name, kernel, app, fleet } = await startScenario('outage', { devices: 10, rate: 200 });

    kernel.answer = busy;
    const run = fleet.run({ durationMs: 6_000 });
    await sleep(1_500);
    kernel.answer = accept;
    await sleep(1_000);
    kernel.down();
    const unhealthy = await waitFor(
      'health to report the kernel down',
      async () => {
        const response = await fetch(`${app.baseUrl}/health`);
        return response.status === 503
          ? ((await response.json()) as { error: Record<string, unknown> })
          : undefined;
      },
      { timeoutMs: 5_000, intervalMs: 100 },
    );
    assert.ok('kernel' in unhealthy.error);
    await sleep(2_000);
    await kernel.up();
    const stats = await run;
    assert.equal(stats.failed, 0);

    const sent = fleet.forwardable();
    await waitForAll(kernel, name, countOf(sent));
    assertArrivedInOrder(sent, kernel.acceptedFrom(name), { exactlyOnce: false });
    assert.ok((await readMetric(app.baseUrl, 'dmp_mqtt_kernel_retries_total')) > 0);
    await waitFor(
      'every message acknowledged',
      async () => (await readMetric(app.baseUrl, 'dmp_mqtt_in_flight')) === 0,
    );
  });

  it('leaves messages it cannot hand off before the retry deadline to the broker, which redelivers them', async () => {
    const { name, kernel, app, fleet } = await startScenario(
      'redeliver',
      { devices: 4, rate: 50 },
      { KERNEL_RETRY_DEADLINE_MS: '1000', KERNEL_RETRY_MAX_BACKOFF_MS: '300' },
    );

    kernel.down();
    await fleet.run({ count: 60 });
    await waitFor(
      'a redelivery request',
      async () => (await readMetric(app.baseUrl, 'dmp_mqtt_redelivery_requests_total')) > 0,
      {
        timeoutMs: 10_000,
      },
    );
    await kernel.up();
    const sent = fleet.forwardable();
    await waitForAll(kernel, name, countOf(sent));
    assertArrivedInOrder(sent, kernel.acceptedFrom(name), { exactlyOnce: false });
    assert.ok((await readMetric(app.baseUrl, 'dmp_mqtt_kernel_abandoned_total', { reason: 'deadline' })) > 0);
  });

  it("keeps a device's order when its redelivered message waits for its copy still in a call on the old connection", async () => {
    const { name, kernel, app, fleet } = await startScenario(
      'copy',
      { devices: 2, rate: 0 },
      { KERNEL_RETRY_DEADLINE_MS: '500', KERNEL_RETRY_MAX_BACKOFF_MS: '100' },
    );
    const [device, trigger] = fleet.devices;
    const first = fleet.publishChange(device).messageId!;
    // The first call carrying the device's message 1 is held for 2 s and then refused (retryable): its
    // hand-off is still pending when the connection is replaced, so the redelivered copy waits for it
    // (duplicate filter) while the device's message 2, redelivered behind it, has nothing to wait for.
    let held = false;
    let triggerSeenAt: number | undefined;
    kernel.delayOf = (messages) => {
      if (held || !messages.some((m) => m.messageId === first)) return 0;
      held = true;
      return 2_000;
    };
    let firstRefused = false;
    kernel.answer = (m) => {
      if (m.messageId === first && !firstRefused) {
        firstRefused = true;
        return busy(m);
      }
      // The other device is refused for 700 ms: its head passes the retry deadline (500 ms), and dmp-mqtt
      // replaces the connection for the broker to redeliver.
      if (m.deviceId === trigger.id && Date.now() - (triggerSeenAt ??= Date.now()) < 700) return busy(m);
      return accept(m);
    };
    await waitFor('message 1 in a call', () => held);
    fleet.publishChange(device);
    fleet.publishChange(trigger);
    const sent = fleet.forwardable();
    await waitForAll(kernel, name, countOf(sent));
    assert.ok((await readMetric(app.baseUrl, 'dmp_mqtt_redelivery_requests_total')) > 0);
    assertArrivedInOrder(sent, kernel.acceptedFrom(name), { exactlyOnce: false });
  });

  it('keeps unacknowledged messages in its session across a crash and gets them after the restart', async () => {
    const name = uniqueName('crash');
    const kernel = await KernelStandIn.start();
    kernel.answer = busy;
    const first = await startMqttApp(name, kernel);
    const fleet = new DeviceFleet({
      url: stack.mqtt.url,
      devices: 5,
      rate: 100,
      deviceIdPrefix: name,
      heartbeatIntervalMs: 0,
    });
    running.push({ kernel, fleet });
    await fleet.connect();
    await fleet.run({ count: 40 });
    await waitFor(
      'the messages in flight',
      async () => (await readMetric(first.baseUrl, 'dmp_mqtt_in_flight')) >= 40,
    );
    assert.equal(kernel.acceptedFrom(name).length, 0);
    await first.stop('SIGKILL');

    kernel.answer = accept;
    const second = await startMqttApp(name, kernel);
    running.push({ app: second });
    const sent = fleet.forwardable();
    await waitForAll(kernel, name, countOf(sent));
    assertArrivedInOrder(sent, kernel.acceptedFrom(name), { exactlyOnce: false });
  });

  it('counts a message once: after a restart mid-stream its redelivered messages are not rate-limited', async () => {
    const name = uniqueName('ratecrash');
    const kernel = await KernelStandIn.start();
    kernel.answer = busy;
    // Each device sends 20 messages at 5/s, within 10/s and a burst of 5: all allowed on first delivery.
    // After the crash the broker sends the 20 again at once (DUP flag): counted again, 15 of them would
    // be refused as DMP_ERR_RATE_LIMITED.
    const limits = { DEVICE_RATE_LIMIT_PER_SECOND: '10', DEVICE_RATE_LIMIT_BURST: '5' };
    const first = await startMqttApp(name, kernel, limits);
    const fleet = new DeviceFleet({
      url: stack.mqtt.url,
      devices: 2,
      rate: 10,
      deviceIdPrefix: name,
      heartbeatIntervalMs: 0,
    });
    running.push({ kernel, fleet });
    await fleet.connect();
    await fleet.run({ count: 40 });
    await waitFor(
      'the messages in flight',
      async () => (await readMetric(first.baseUrl, 'dmp_mqtt_in_flight')) >= 40,
    );
    await first.stop('SIGKILL');

    kernel.answer = accept;
    const second = await startMqttApp(name, kernel, limits);
    running.push({ app: second });
    // A refused message is acknowledged and never comes back: every message at the kernel means none of
    // them was refused, on either side of the restart. (Not the rejection counters: other traffic on the
    // shared broker reaches this share group too.)
    const sent = fleet.forwardable();
    await waitForAll(kernel, name, countOf(sent));
    assertArrivedInOrder(sent, kernel.acceptedFrom(name), { exactlyOnce: false });
  });

  it("with Redis away, keeps cached devices flowing and takes an uncached device's message once Redis is back", async () => {
    const redis = await OwnRedis.start();
    running.push({ redis });
    const { name, kernel, app, fleet } = await startScenario(
      'redisaway',
      { devices: 2, rate: 0 },
      { REDIS_URL: redis.url, DEVICE_REGISTRY_REQUIRED: 'true', DEVICE_REGISTRY_WAIT_MS: '1000' },
    );
    const [cached, uncached] = fleet.devices;
    for (const device of fleet.devices) {
      const { status, body } = await callAdminApi(`${app.baseUrl}/admin/devices`, `${name}-admin`, 'POST', {
        deviceId: device.id,
        tenantId: 't-e2e',
      });
      assert.equal(status, 201, JSON.stringify(body));
    }
    // Its first message puts the cached device in dmp-mqtt's cache; the other one is never looked up.
    fleet.publishChange(cached);
    await waitForAll(kernel, cached.id, 1);

    await redis.down();
    const waiting = fleet.publishChange(uncached).messageId!;
    for (let i = 0; i < 5; i++) fleet.publishChange(cached);
    // The uncached device's message waits DEVICE_REGISTRY_WAIT_MS, then is left unacknowledged for the
    // broker to redeliver, without holding back the acknowledgements received after it: nothing stays
    // in flight (before, it waited for Redis and every later PUBACK waited with it).
    await waitForAll(kernel, cached.id, 6, 10_000);
    await waitFor(
      'every message acknowledged or left for redelivery while Redis is away',
      async () => (await readMetric(app.baseUrl, 'dmp_mqtt_in_flight')) === 0,
      { timeoutMs: 10_000, intervalMs: 100 },
    );
    assert.equal(await readMetric(app.baseUrl, 'dmp_mqtt_deferred_total'), 1);
    assert.ok(!kernel.accepted.some((m) => m.messageId === waiting), 'not taken while Redis is away');

    await redis.up();
    // Back: the cached device's entry was kept (read again, not looked up as unknown to the cache).
    const misses = await readMetric(app.baseUrl, 'dmp_mqtt_device_lookups_total', { result: 'miss' });
    await waitFor('the device change subscription restored', async () => {
      fleet.publishChange(cached);
      return (await readMetric(app.baseUrl, 'dmp_mqtt_device_lookups_total', { result: 'refresh' })) > 0;
    });
    const sent = fleet.forwardable();
    // Every message of both devices at the kernel: none was refused (the rejection counters would also
    // count other traffic on the shared broker, which reaches this share group too).
    await waitForAll(kernel, name, countOf(sent), 30_000);
    assertArrivedInOrder(sent, kernel.acceptedFrom(name), { exactlyOnce: false });
    assert.ok((await readMetric(app.baseUrl, 'dmp_mqtt_redelivery_requests_total')) >= 1);
    assert.ok(
      (await readMetric(app.baseUrl, 'dmp_mqtt_device_lookups_total', { result: 'miss' })) <= misses + 1,
      'at most the uncached device is a miss after Redis came back',
    );
  });

  it('on SIGTERM (hand-over) stops taking messages, hands off and acknowledges what it holds, and ends its session', async () => {
    const name = uniqueName('drain');
    const kernel = await KernelStandIn.start();
    kernel.delayMs = 300; // a slow kernel: messages are in flight when SIGTERM comes
    const app = await startMqttApp(name, kernel, { MQTT_STOP_MODE: 'hand-over' });
    const fleet = new DeviceFleet({
      url: stack.mqtt.url,
      devices: 20,
      rate: 1_000,
      deviceIdPrefix: name,
      heartbeatIntervalMs: 0,
    });
    running.push({ kernel, fleet });
    await fleet.connect();
    await fleet.run({ count: 300 });
    await waitFor(
      'messages in flight',
      async () => (await readMetric(app.baseUrl, 'dmp_mqtt_in_flight')) > 0,
    );
    assert.notEqual(await app.stop('SIGTERM'), 1, 'shuts down cleanly on SIGTERM');

    const sent = fleet.forwardable();
    const accepted = kernel.acceptedFrom(name);
    assertArrivedInOrder(sent, accepted);

    // Everything was acknowledged and the session ended: a new instance with the same id gets nothing again.
    kernel.delayMs = 0;
    const again = await startMqttApp(name, kernel, { MQTT_STOP_MODE: 'hand-over' });
    running.push({ app: again });
    await sleep(1_500);
    assert.equal(kernel.acceptedFrom(name).length, accepted.length, 'nothing redelivered');
  });
  it('on SIGTERM (keep-session, the default) loses nothing while it is the only replica: what devices publish meanwhile comes after the restart', async () => {
    const name = uniqueName('restart');
    const kernel = await KernelStandIn.start();
    kernel.delayMs = 300; // a slow kernel: messages are in flight when SIGTERM comes
    const first = await startMqttApp(name, kernel);
    const fleet = new DeviceFleet({
      url: stack.mqtt.url,
      devices: 10,
      rate: 100,
      deviceIdPrefix: name,
      heartbeatIntervalMs: 0,
    });
    running.push({ kernel, fleet });
    await fleet.connect();
    // 4 s of traffic; the replica stops in the middle of it and is away while the rest is published.
    const published = fleet.run({ count: 400 });
    await waitFor(
      'messages in flight',
      async () => (await readMetric(first.baseUrl, 'dmp_mqtt_in_flight')) > 0,
    );
    assert.notEqual(await first.stop('SIGTERM'), 1, 'shuts down cleanly on SIGTERM');
    const beforeRestart = new Set(kernel.acceptedFrom(name).map((m) => m.messageId)).size;
    await published;
    const sent = fleet.forwardable();
    assert.ok(beforeRestart < countOf(sent), 'some messages were published while no replica ran');

    kernel.delayMs = 0;
    const second = await startMqttApp(name, kernel);
    running.push({ app: second });
    await waitForAll(kernel, name, countOf(sent));
    assertArrivedInOrder(sent, kernel.acceptedFrom(name), { exactlyOnce: false });
  });
});
