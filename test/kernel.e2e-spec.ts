/**
 * dmp-kernel end to end: the built app runs as a real process, this test calls its gRPC Ingest
 * like dmp-mqtt does and reads what it published from the real RocketMQ. The kernel publishes to
 * its own test topics (`dmp_kernel_test_event` / `_snapshot`, FIFO) read by the test's own
 * orderly group `dmp_kernel_test` (scripts/stack/rocketmq-{topics,groups}.txt), so a running
 * pipeline does not interfere.
 */
import {
  type IngestOutcome,
  type KernelIngestStub,
  TELEMETRY_LOADER_OPTIONS,
  TELEMETRY_PACK_FORMAT,
  TELEMETRY_PROTO_PATH,
  type TelemetryGrpcPackage,
  type TelemetryRequest,
  telemetryShardGroup,
  telemetryShardOf,
} from '@dmp/contracts';
import { MultiTopicSimpleConsumer } from '@dmp/messaging';
import { HealthRegistry, MetricsRegistry } from '@dmp/observability';
import {
  createRocketmqResources,
  drainReceived,
  freePort,
  getJaegerTrace,
  inQueueOrder,
  receivedTelemetry,
  readMetric,
  servicesOf,
  silentClientLogger,
  stack,
  startApp,
  waitFor,
  type ReceivedTelemetry,
  type RunningApp,
} from '@dmp/testing';
import { credentials, loadPackageDefinition, status, type ServiceError } from '@grpc/grpc-js';
import { loadSync } from '@grpc/proto-loader';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { after, before, describe, it } from 'node:test';
import { loadMqttConfig } from '../apps/dmp-mqtt/src/config';
import { KernelForwarder } from '../apps/dmp-mqtt/src/kernel-client/kernel-forwarder.service';
import { KernelIngestClient } from '../apps/dmp-mqtt/src/kernel-client/kernel-ingest.client';

const EVENT_TOPIC = 'dmp_kernel_test_event';
const SNAPSHOT_TOPIC = 'dmp_kernel_test_snapshot';
const GROUP = 'dmp_kernel_test';
const SHARDS = 16;
const run = randomBytes(3).toString('hex');
const label = `dmp-kernel-e2e-${run}`;

type IngestClient = KernelIngestStub;

const newTraceId = () => randomBytes(16).toString('hex');
const traceparentOf = (traceId: string) => `00-${traceId}-${randomBytes(8).toString('hex')}-01`;

function message(
  deviceId: string,
  i: number,
  kind: TelemetryRequest['kind'],
  extra: Partial<TelemetryRequest> = {},
): TelemetryRequest {
  const now = Date.now();
  return {
    deviceId,
    messageId: `${deviceId}-m${i}`,
    kind,
    ts: now - 1_000 + i,
    seq: i + 1,
    metrics: { temp: { number: 20 + i / 10 }, on: { flag: i % 2 === 0 }, mode: { text: `m${i}` } },
    receivedAt: now,
    traceparent: traceparentOf(newTraceId()),
    ...extra,
  };
}

describe('dmp-kernel', { timeout: 240_000 }, () => {
  let kernel: RunningApp | undefined;
  let client: IngestClient;
  const consumer = new MultiTopicSimpleConsumer({
    endpoints: stack.rocketmq.endpoints,
    namespace: stack.rocketmq.namespace,
    consumerGroup: GROUP,
    subscriptions: new Map([
      [EVENT_TOPIC, '*'],
      [SNAPSHOT_TOPIC, '*'],
    ]),
    awaitDuration: 5_000,
    logger: silentClientLogger,
  });
  /** Every device message the test group received, in arrival order. */
  const received: ReceivedTelemetry[] = [];
  let collecting = true;
  let collectors: Promise<void>[] = [];

  const ingest = (messages: TelemetryRequest[], to = client, timeoutMs = 30_000) =>
    new Promise<IngestOutcome[]>((resolve, reject) =>
      to.Ingest({ messages }, { deadline: Date.now() + timeoutMs }, (error, result) =>
        error ? reject(error) : resolve(result!.outcomes),
      ),
    );
  const newClient = (url: string) => {
    const definition = loadPackageDefinition(
      loadSync(TELEMETRY_PROTO_PATH, TELEMETRY_LOADER_OPTIONS),
    ) as unknown as TelemetryGrpcPackage;
    return new definition.dmp.telemetry.v1.KernelIngest(url, credentials.createInsecure());
  };
  const receivedFor = (messageId: string) => received.filter((r) => r.telemetry.messageId === messageId);
  const orderOf = (deviceId: string) =>
    received
      .filter((r) => r.telemetry.deviceId === deviceId)
      .sort(inQueueOrder)
      .map((r) => r.telemetry.messageId);
  const waitReceived = (messageIds: string[], timeoutMs = 30_000) =>
    waitFor(
      `${messageIds.length} messages in RocketMQ`,
      () =>
        messageIds.every((id) => receivedFor(id).length > 0) && messageIds.map((id) => receivedFor(id)[0]),
      { timeoutMs },
    );

  before(async () => {
    await createRocketmqResources({
      topics: { [EVENT_TOPIC]: 'FIFO', [SNAPSHOT_TOPIC]: 'FIFO' },
      groups: { dmp_kernel_test: 'orderly' },
    });
    await consumer.startup();
    // One loop per topic (receive() would alternate topics, long-polling the idle one). The first
    // receive drains leftovers of earlier runs and gives a new group its offsets before anything is sent.
    await Promise.all(
      [EVENT_TOPIC, SNAPSHOT_TOPIC].map((topic) =>
        drainReceived(
          () => consumer.receiveFrom(topic, 32, 10_000),
          (view) => consumer.ack(view),
        ),
      ),
    );
    collectors = [EVENT_TOPIC, SNAPSHOT_TOPIC].map(async (topic) => {
      while (collecting) {
        const views = await consumer.receiveFrom(topic, 32, 10_000).catch(() => []);
        received.push(...views.flatMap(receivedTelemetry));
        await Promise.all(views.map((view) => consumer.ack(view)));
      }
    });

    const grpcPort = await freePort();
    kernel = await startApp(
      'dmp-kernel',
      {
        KERNEL_GRPC_URL: `127.0.0.1:${grpcPort}`,
        ROCKETMQ_TOPIC_EVENT: EVENT_TOPIC,
        ROCKETMQ_TOPIC_SNAPSHOT: SNAPSHOT_TOPIC,
        KERNEL_SNAPSHOT_MAX_IN_FLIGHT: '1',
        KERNEL_PACK_SHARDS: String(SHARDS),
        // Every call waits for its packs: what Ingest answers is what the packs stored, linger or not.
        KERNEL_PACK_LINGER_MS: '300',
        // Ingest only: rule evaluation has its own end-to-end test (rules.e2e-spec.ts).
        KERNEL_RULES_ENABLED: 'false',
        LOG_LEVEL: 'info',
      },
      { label },
    );
    client = newClient(`127.0.0.1:${grpcPort}`);
  });

  after(async () => {
    client?.close();
    await kernel?.stop('SIGKILL');
    collecting = false;
    await Promise.all(collectors);
    await consumer.shutdown();
  });

  it('publishes each valid message of a batch durably, FIFO per device, and rejects the invalid one', async () => {
    const a = `kernel-${run}-a`;
    const b = `kernel-${run}-b`;
    const batch = [
      message(a, 0, 'KIND_TELEMETRY'),
      message(b, 0, 'KIND_EVENT'),
      message(a, 1, 'KIND_TELEMETRY', { seq: 0 }),
      message('bad/device', 0, 'KIND_TELEMETRY', { messageId: `bad-${run}` }),
      message(b, 1, 'KIND_SNAPSHOT', { metrics: { temp: { number: 0 }, on: { flag: false } } }),
      message(a, 2, 'KIND_TELEMETRY'),
    ];
    const outcomes = await ingest(batch);

    assert.equal(outcomes.length, batch.length);
    assert.deepEqual(
      outcomes.map((o) => o.messageId),
      batch.map((m) => m.messageId),
      'one outcome per message, in batch order',
    );
    const invalid = outcomes[3];
    assert.equal(invalid.accepted, false);
    assert.equal(invalid.errorCode, 'DMP_ERR_INVALID_PAYLOAD');
    assert.equal(invalid.retryable, false);
    assert.match(invalid.errorMessage, /deviceId/);
    for (const [i, outcome] of outcomes.entries())
      if (i !== 3)
        assert.deepEqual(outcome, {
          messageId: batch[i].messageId,
          accepted: true,
          errorCode: '',
          errorMessage: '',
          retryable: false,
        });

    const valid = batch.filter((_, i) => i !== 3);
    const entries = await waitReceived(valid.map((m) => m.messageId));
    for (const [i, { view, telemetry, traceparent = '' }] of entries.entries()) {
      const sent = valid[i];
      const kind =
        sent.kind === 'KIND_SNAPSHOT' ? 'snapshot' : sent.kind === 'KIND_EVENT' ? 'event' : 'telemetry';
      assert.equal(view.topic, kind === 'snapshot' ? SNAPSHOT_TOPIC : EVENT_TOPIC);
      assert.equal(
        view.messageGroup,
        telemetryShardGroup(telemetryShardOf(sent.deviceId, SHARDS)),
        'message group = the device shard',
      );
      assert.equal(view.properties.get('dmp_format'), TELEMETRY_PACK_FORMAT);
      const sentTraceId = sent.traceparent!.split('-')[1];
      assert.equal(traceparent.split('-')[1], sentTraceId, 'the device trace continues into RocketMQ');
      assert.notEqual(traceparent, sent.traceparent, 'with the kernel create span as parent');
      const body = telemetry;
      const metrics = Object.fromEntries(
        Object.entries(sent.metrics).map(([name, value]) => [name, Object.values(value)[0] as unknown]),
      );
      assert.deepEqual(body, {
        deviceId: sent.deviceId,
        messageId: sent.messageId,
        kind,
        ts: sent.ts,
        ...(sent.seq ? { seq: sent.seq } : {}),
        metrics,
        receivedAt: sent.receivedAt,
        tenantId: '',
        productId: '',
        siteId: '',
      });
    }
    // Device a's messages were consumed in the order of the batch.
    assert.deepEqual(orderOf(a), [`${a}-m0`, `${a}-m1`, `${a}-m2`]);
    assert.equal(receivedFor(`bad-${run}`).length, 0);

    assert.ok(
      (await readMetric(kernel!.baseUrl, 'dmp_kernel_messages_total', {
        kind: 'telemetry',
        outcome: 'accepted',
      })) >= 3,
    );
    assert.equal(
      await readMetric(kernel!.baseUrl, 'dmp_kernel_messages_total', { kind: 'unknown', outcome: 'invalid' }),
      1,
    );
    assert.ok((await readMetric(kernel!.baseUrl, 'dmp_kernel_ingest_seconds_count')) >= 1);
    assert.ok(
      (await readMetric(kernel!.baseUrl, 'dmp_rocketmq_sent_total', { topic: EVENT_TOPIC, result: 'ok' })) >=
        1,
    );
    assert.ok(
      (await readMetric(kernel!.baseUrl, 'dmp_kernel_pack_messages_sum', { topic: EVENT_TOPIC })) >= 4,
      'the event topic carried the four events in its packs',
    );
  });

  it('answers /health with RocketMQ up', async () => {
    const response = await fetch(`${kernel!.baseUrl}/health`);
    assert.equal(response.status, 200);
    const body = (await response.json()) as { status: string; details: Record<string, { status: string }> };
    assert.equal(body.status, 'ok');
    assert.equal(body.details.rocketmq?.status, 'up');
  });

  it('sheds snapshots beyond KERNEL_SNAPSHOT_MAX_IN_FLIGHT (retryable) but never events', async () => {
    const devices = Array.from({ length: 5 }, (_, d) => `kernel-${run}-s${d}`);
    const batch = devices.flatMap((deviceId) => [
      message(deviceId, 0, 'KIND_SNAPSHOT'),
      message(deviceId, 1, 'KIND_EVENT'),
      message(deviceId, 2, 'KIND_SNAPSHOT'),
    ]);
    const outcomes = await ingest(batch);
    const byId = new Map(outcomes.map((o) => [o.messageId, o]));

    // Events: all accepted.
    for (const deviceId of devices) assert.equal(byId.get(`${deviceId}-m1`)?.accepted, true);
    // The batch is handed off at once: the first snapshot takes the only slot, every other is shed…
    assert.equal(byId.get(`${devices[0]}-m0`)?.accepted, true);
    assert.equal(byId.get(`${devices[0]}-m2`)?.errorCode, 'DMP_ERR_SHED_SNAPSHOT');
    for (const deviceId of devices.slice(1)) {
      assert.deepEqual(byId.get(`${deviceId}-m0`), {
        messageId: `${deviceId}-m0`,
        accepted: false,
        errorCode: 'DMP_ERR_SHED_SNAPSHOT',
        errorMessage: 'snapshot shed under load',
        retryable: true,
      });
      // …and their later snapshot is not sent ahead of it (per-device order).
      const later = byId.get(`${deviceId}-m2`)!;
      assert.equal(later.accepted, false);
      assert.equal(later.retryable, true);
      assert.equal(later.errorCode, 'DMP_ERR_PRECEDING_FAILED');
    }
    assert.equal(
      await readMetric(kernel!.baseUrl, 'dmp_kernel_shed_total', { kind: 'snapshot' }),
      devices.length,
    );
    await waitReceived(outcomes.filter((o) => o.accepted).map((o) => o.messageId));
    for (const o of outcomes.filter((o) => !o.accepted)) assert.equal(receivedFor(o.messageId).length, 0);
  });

  it("shows the kernel's spans in the device message's trace (Jaeger)", async (t) => {
    const jaegerUp = await fetch(`${stack.jaegerQueryUrl}/api/services`).then(
      (r) => r.ok,
      () => false,
    );
    if (!jaegerUp) return t.skip('Jaeger is not running');
    const traceId = newTraceId();
    const deviceId = `kernel-${run}-trace`;
    const [outcome] = await ingest([
      message(deviceId, 0, 'KIND_EVENT', { traceparent: traceparentOf(traceId) }),
    ]);
    assert.equal(outcome?.accepted, true);
    const trace = await waitFor(
      'the trace in Jaeger',
      async () => {
        const found = await getJaegerTrace(traceId);
        return found && found.spans.some((s) => s.operationName === `create ${EVENT_TOPIC}`) && found;
      },
      { timeoutMs: 20_000, intervalMs: 500 },
    );
    assert.ok(servicesOf(trace).has('dmp-kernel'));
    const process = trace.spans.find((s) => s.operationName === 'process kernel.ingest')!;
    const create = trace.spans.find((s) => s.operationName === `create ${EVENT_TOPIC}`)!;
    assert.ok(process && create);
    assert.equal(create.references.find((r) => r.refType === 'CHILD_OF')?.spanID, process.spanID);
    // The pack entry carries the create span's context.
    const [entry] = await waitReceived([`${deviceId}-m0`]);
    assert.equal(entry.traceparent?.split('-')[2], create.spanID);
    const tag = (name: string) => process.tags.find((x) => x.key === name)?.value;
    assert.equal(tag('dmp.device.id'), deviceId);
    assert.equal(tag('messaging.message.id'), `${deviceId}-m0`);
    assert.equal(tag('rpc.system'), 'grpc');
    assert.equal(tag('span.kind'), 'consumer');
  });

  it('finishes an in-flight Ingest on SIGTERM, then exits', async () => {
    const deviceId = `kernel-${run}-drain`;
    // One device's 300 messages, in packs that linger (KERNEL_PACK_LINGER_MS): in flight for a while.
    const batch = Array.from({ length: 300 }, (_, i) => message(deviceId, i, 'KIND_TELEMETRY'));
    const call = ingest(batch);
    await waitFor(
      'the batch in flight',
      async () => (await readMetric(kernel!.baseUrl, 'dmp_kernel_in_flight', { kind: 'telemetry' })) > 0,
      { timeoutMs: 10_000, intervalMs: 5 },
    );
    // The app's own output: startApp's log file can miss the last lines written before the exit.
    const child = kernel!.process;
    let output = '';
    child.stdout?.on('data', (chunk: Buffer) => (output += chunk.toString()));
    const closed = once(child, 'close');
    const exit = kernel!.stop('SIGTERM');
    const outcomes = await call;
    assert.equal(
      outcomes.filter((o) => o.accepted).length,
      batch.length,
      'every message of the call accepted',
    );
    // Nest re-raises SIGTERM once its shutdown hooks are done: the exit is by the signal (code null)…
    assert.ok([0, null].includes(await exit));
    kernel = undefined;
    await closed;
    // …after the producer was stopped in the last hook, i.e. a complete graceful shutdown.
    assert.match(output, /RocketMQ producer of dmp-kernel stopped/);
    await waitReceived(
      batch.map((m) => m.messageId),
      60_000,
    );
    assert.deepEqual(
      orderOf(deviceId).slice(0, batch.length),
      batch.map((m) => m.messageId),
    );
  });

  /**
   * A second kernel whose one lane per topic is full at 4 waiting messages, and whose packs linger
   * 500 ms: what one call adds fills the lane until its pack goes.
   */
  describe('with a tiny lane bound', () => {
    let small: RunningApp | undefined;
    let smallUrl = '';
    let smallClient: IngestClient;
    const eventLane = `${EVENT_TOPIC}/0`;
    const waitingInLanes = () => readMetric(small!.baseUrl, 'dmp_kernel_pack_waiting');
    /** Ingests a last message and waits for it: the one shard's FIFO queue delivered everything before it. */
    const drained = async (name: string) => {
      const sentinel = message(`kernel-${run}-${name}-sentinel`, 0, 'KIND_EVENT');
      assert.equal((await ingest([sentinel], smallClient))[0].accepted, true);
      await waitReceived([sentinel.messageId]);
    };

    before(async () => {
      const grpcPort = await freePort();
      smallUrl = `127.0.0.1:${grpcPort}`;
      small = await startApp(
        'dmp-kernel',
        {
          KERNEL_GRPC_URL: smallUrl,
          ROCKETMQ_TOPIC_EVENT: EVENT_TOPIC,
          ROCKETMQ_TOPIC_SNAPSHOT: SNAPSHOT_TOPIC,
          KERNEL_PACK_SHARDS: '1',
          KERNEL_PACK_LANE_MAX_MESSAGES: '4',
          KERNEL_PACK_LINGER_MS: '500',
          KERNEL_RULES_ENABLED: 'false',
          LOG_LEVEL: 'info',
        },
        { label: `${label}-small` },
      );
      smallClient = newClient(smallUrl);
    });

    after(async () => {
      smallClient?.close();
      await small?.stop('SIGKILL');
    });

    it('answers RESOURCE_EXHAUSTED (DMP_ERR_LANE_FULL) while a lane is full, taking nothing of the call', async () => {
      const filling = Array.from({ length: 5 }, (_, i) => message(`kernel-${run}-fill`, i, 'KIND_EVENT'));
      const first = ingest(filling, smallClient);
      await waitFor('the first call waiting in its lane', async () => (await waitingInLanes()) >= 5, {
        timeoutMs: 10_000,
        intervalMs: 10,
      });
      const refusedBatch = [message(`kernel-${run}-refused`, 0, 'KIND_EVENT')];
      const refused = await ingest(refusedBatch, smallClient).then(
        () => assert.fail('the call was taken'),
        (error: ServiceError) => error,
      );
      assert.equal(refused.code, status.RESOURCE_EXHAUSTED);
      assert.match(
        refused.details,
        new RegExp(`^DMP_ERR_LANE_FULL: lane ${eventLane} is full \\(5 messages`),
      );
      assert.equal(
        await readMetric(small!.baseUrl, 'dmp_kernel_messages_total', { kind: 'event', outcome: 'full' }),
        1,
      );
      assert.deepEqual(
        (await first).map((o) => o.accepted),
        filling.map(() => true),
      );
      await drained('full');
      assert.equal(receivedFor(refusedBatch[0].messageId).length, 0, 'nothing of the refused call');
    });

    it("stores a burst through dmp-mqtt's forwarder exactly once: refused calls are retried with its backoff", async () => {
      const mqttConfig = loadMqttConfig({
        ADMIN_TOKEN: 'kernel-e2e-admin-token',
        MQTT_AUTH_HTTP_SECRET: 'kernel-e2e-auth-secret',
        KERNEL_GRPC_URL: smallUrl,
        KERNEL_BATCH_MAX_MESSAGES: '10',
        // A refused call comes back after the backoff, up to this long.
        KERNEL_RETRY_DEADLINE_MS: '60000',
      });
      const mqttMetrics = new MetricsRegistry('dmp-mqtt-kernel-e2e');
      const forwarder = new KernelForwarder(
        mqttConfig,
        new KernelIngestClient(smallUrl, mqttConfig.ingest.kernel.callTimeoutMs),
        mqttMetrics,
        new HealthRegistry(),
      );
      const fullBefore = await readMetric(small!.baseUrl, 'dmp_kernel_messages_total', { outcome: 'full' });
      const devices = Array.from({ length: 20 }, (_, d) => `kernel-${run}-burst${d}`);
      const burst = devices.flatMap((deviceId) =>
        Array.from({ length: 5 }, (_, i) => ({
          deviceId,
          messageId: `${deviceId}-m${i}`,
          kind: 'event' as const,
          ts: Date.now() - 1_000 + i,
          seq: i + 1,
          metrics: { temp: 20 + i },
          receivedAt: Date.now(),
        })),
      );
      const delivery = new AbortController();
      try {
        const outcomes = await Promise.all(burst.map((m) => forwarder.forward(m, {}, delivery.signal)));
        assert.deepEqual(
          outcomes.filter((o) => !o.accepted),
          [],
          'every message taken in the end',
        );
      } finally {
        await forwarder.onApplicationShutdown();
      }
      assert.ok(
        (await readMetric(small!.baseUrl, 'dmp_kernel_messages_total', { outcome: 'full' })) > fullBefore,
        'calls were refused on the way',
      );
      const retries = await mqttMetrics.registry.getSingleMetric('dmp_mqtt_kernel_retries_total')!.get();
      assert.ok(retries.values[0].value > 0, 'and retried by dmp-mqtt');

      await drained('burst');
      const counts = burst.map((m) => [m.messageId, receivedFor(m.messageId).length]);
      assert.deepEqual(
        counts,
        burst.map((m) => [m.messageId, 1]),
        'each message stored exactly once',
      );
      for (const deviceId of devices)
        assert.deepEqual(
          orderOf(deviceId),
          burst.filter((m) => m.deviceId === deviceId).map((m) => m.messageId),
        );
    });

    it('drops the messages of a call whose deadline passed while they waited in their lane', async () => {
      const cancelledBefore = await readMetric(small!.baseUrl, 'dmp_kernel_messages_total', {
        outcome: 'cancelled',
      });
      // Gone before the pack's 500 ms linger is over.
      const batch = Array.from({ length: 3 }, (_, i) => message(`kernel-${run}-late`, i, 'KIND_EVENT'));
      const late = await ingest(batch, smallClient, 150).then(
        () => assert.fail('answered within its deadline'),
        (error: ServiceError) => error,
      );
      assert.equal(late.code, status.DEADLINE_EXCEEDED);
      await waitFor(
        'the kernel dropping them',
        async () =>
          (await readMetric(small!.baseUrl, 'dmp_kernel_messages_total', { outcome: 'cancelled' })) -
            cancelledBefore ===
          batch.length,
        { timeoutMs: 10_000, intervalMs: 20 },
      );
      assert.equal(await waitingInLanes(), 0);
      await drained('late');
      for (const m of batch) assert.equal(receivedFor(m.messageId).length, 0, `${m.messageId} not sent`);
    });
  });
});
