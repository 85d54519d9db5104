/**
 * Rule evaluation of packs that come again, and side effects that do not go out, against the real local
 * stack: a real dmp-kernel consumes packs the test sends to its own telemetry topic (RocketMQ), keeps its
 * state in its own Redis namespace, publishes alarm events and dead letters to the test's own topics
 * (`dmp_redelivery_test_*`, scripts/stack/rocketmq-*.txt) and sends commands to Mosquitto through a
 * small MQTT relay of the test, which can withhold one device's commands: the broker then never
 * acknowledges them — no shared server is stopped or reconfigured.
 *
 * A pack fails and comes again when one of its devices cannot be evaluated: the test makes that
 * device's state key in Redis the wrong type (as a corrupt key would), and repairs it later.
 */
import {
  DEAD_LETTER_SOURCE_KERNEL_OUTBOX,
  DeadLetterProperty,
  encodeTelemetryPack,
  TELEMETRY_PACK_FORMAT,
  TelemetryProperty,
  telemetryPackEntryJson,
  type AlarmEvent,
  type NormalizedTelemetry,
} from '@dmp/contracts';
import { MultiTopicSimpleConsumer, RocketMqProducer } from '@dmp/messaging';
import {
  drainReceived,
  freePort,
  readMetric,
  silentClientLogger,
  silentNestLogger,
  stack,
  startApp,
  waitFor,
  type RunningApp,
} from '@dmp/testing';
import { Redis } from 'ioredis';
import mqtt, { type MqttClient } from 'mqtt';
import assert from 'node:assert/strict';
import { rm } from 'node:fs/promises';
import { connect, createServer as createTcpServer, type Server as TcpServer, type Socket } from 'node:net';
import { after, before, describe, it } from 'node:test';
import type { MessageView } from 'rocketmq-client-nodejs';
import { alarmKeys, enqueueOutbox, outboxEntryOf, type OutboxEntry } from '@dmp/rules';
import {
  createPipelineResources,
  deleteKeys,
  kernelEnv,
  pipelineNames,
  startHookReceiver,
  writeRulesDir,
  type HookReceiver,
} from './support/rule-pipeline';

const names = pipelineNames('redelivery');
const { run, namespace: NAMESPACE, topics: TOPICS, groups: GROUPS } = names;
const COMMAND_TIMEOUT_MS = 2_000;
const OUTBOX_MAX_ATTEMPTS = 3;
const dev = (name: string) => `redelivery-${run}-${name}`;

const RULES = (webhookUrl: string) => `rules:
  - id: hot
    name: Too hot
    when: msg.metrics.temperature > 30.0
    actions:
      - alarm: { severity: major, message: 'hot' }
      - command: { name: fan.set, params: { on: true }, on: match }
      - webhook: { url: '${webhookUrl}', on: match }
`;

/**
 * An MQTT relay between the kernel and Mosquitto that forwards everything except PUBLISH packets to
 * the topics in `withheld`: their sender waits for a PUBACK that never comes.
 */
class MqttRelay {
  readonly withheld = new Set<string>();
  private readonly sockets = new Set<Socket>();
  private server?: TcpServer;
  port = 0;

  async start(upstream: URL): Promise<void> {
    this.server = createTcpServer((client) => {
      const broker = connect(Number(upstream.port || 1883), upstream.hostname);
      this.sockets.add(client).add(broker);
      broker.pipe(client);
      let pending = Buffer.alloc(0);
      client.on('data', (chunk: Buffer) => {
        pending = Buffer.concat([pending, chunk]);
        for (;;) {
          const packet = nextPacket(pending);
          if (!packet) break;
          pending = pending.subarray(packet.length);
          if (!this.isWithheld(packet.bytes)) broker.write(packet.bytes);
        }
      });
      const close = () => {
        client.destroy();
        broker.destroy();
      };
      client.on('close', close).on('error', close);
      broker.on('close', close).on('error', close);
    });
    this.port = await freePort();
    await new Promise<void>((resolve) => this.server!.listen(this.port, '127.0.0.1', resolve));
  }

  async stop(): Promise<void> {
    for (const socket of this.sockets) socket.destroy();
    await new Promise<void>((resolve) => (this.server ? this.server.close(() => resolve()) : resolve()));
  }

  private isWithheld(packet: Buffer): boolean {
    if (packet[0] >> 4 !== 3) return false; // not a PUBLISH
    let offset = 1;
    while (packet[offset] & 0x80) offset++;
    offset++;
    const length = packet.readUInt16BE(offset);
    return this.withheld.has(packet.subarray(offset + 2, offset + 2 + length).toString('utf8'));
  }
}

/** The first whole MQTT packet of `buffer` (fixed header + remaining length), if it is all there. */
function nextPacket(buffer: Buffer): { bytes: Buffer; length: number } | undefined {
  let remaining = 0;
  let multiplier = 1;
  let offset = 1;
  for (;;) {
    if (offset >= buffer.length) return undefined;
    const byte = buffer[offset++];
    remaining += (byte & 0x7f) * multiplier;
    multiplier *= 128;
    if ((byte & 0x80) === 0) break;
  }
  const length = offset + remaining;
  return buffer.length >= length ? { bytes: buffer.subarray(0, length), length } : undefined;
}

let counter = 0;
function telemetry(deviceId: string, temperature: number): NormalizedTelemetry {
  const now = Date.now() + ++counter; // distinct times: a later message is newer
  return {
    deviceId,
    messageId: `${deviceId}-m${counter}`,
    kind: 'telemetry',
    ts: now,
    receivedAt: now,
    metrics: { temperature },
    tenantId: 'tenant',
    productId: 'product',
    siteId: 'site',
  };
}

describe('rule evaluation of redelivered packs and stuck side effects', { timeout: 240_000 }, () => {
  let kernel: RunningApp | undefined;
  let rulesDir: string;
  const relay = new MqttRelay();
  const redis = new Redis(stack.redis.url, { lazyConnect: true });
  const keys = alarmKeys(NAMESPACE);
  const producer = new RocketMqProducer({
    endpoints: stack.rocketmq.endpoints,
    namespace: stack.rocketmq.namespace,
    topics: [TOPICS.event],
    serviceName: 'redelivery-e2e',
    logger: silentNestLogger,
  });
  const observers = {
    alarm: new MultiTopicSimpleConsumer({
      endpoints: stack.rocketmq.endpoints,
      namespace: stack.rocketmq.namespace,
      consumerGroup: GROUPS.alarm,
      subscriptions: new Map([[TOPICS.alarm, '*']]),
      awaitDuration: 5_000,
      logger: silentClientLogger,
    }),
    dlq: new MultiTopicSimpleConsumer({
      endpoints: stack.rocketmq.endpoints,
      namespace: stack.rocketmq.namespace,
      consumerGroup: GROUPS.dlq,
      subscriptions: new Map([[TOPICS.deadLetter, '*']]),
      awaitDuration: 5_000,
      logger: silentClientLogger,
    }),
  };
  const alarms: AlarmEvent[] = [];
  const deadLetters: MessageView[] = [];
  let observing = true;
  const loops: Promise<void>[] = [];
  let device: MqttClient;
  const commands: { deviceId: string; commandId: string }[] = [];
  const hooks: { deviceId: string; deliveryId: string }[] = [];
  let hookReceiver: HookReceiver | undefined;

  const sendPack = (messages: NormalizedTelemetry[]) =>
    producer.send({
      topic: TOPICS.event,
      body: encodeTelemetryPack(messages.map((telemetry) => telemetryPackEntryJson({ telemetry }))),
      messageGroup: `redelivery-${run}`,
      keys: messages.map((m) => m.messageId),
      properties: {
        [TelemetryProperty.format]: TELEMETRY_PACK_FORMAT,
        [TelemetryProperty.count]: String(messages.length),
      },
    });
  const eventsOf = (deviceId: string, transition: string) =>
    alarms.filter((a) => a.deviceId === deviceId && a.transition === transition);
  const outboxOf = async (deviceId: string) =>
    Object.values(await redis.hgetall(keys.outbox))
      .map((json) => JSON.parse(json) as OutboxEntry)
      .filter((entry) => entry.kind === 'command' && entry.command.deviceId === deviceId);

  before(async () => {
    await createPipelineResources(names);
    await redis.connect();
    hookReceiver = await startHookReceiver((text) => {
      const body = JSON.parse(text) as { deviceId: string; deliveryId: string };
      hooks.push({ deviceId: body.deviceId, deliveryId: body.deliveryId });
    });
    rulesDir = await writeRulesDir('dmp-redelivery-e2e-', { 'hot.yaml': RULES(`${hookReceiver.url}/hooks`) });

    await relay.start(new URL(stack.mqtt.url));
    device = await mqtt.connectAsync(stack.mqtt.url, {
      protocolVersion: 5,
      clientId: `redelivery-e2e-${run}`,
      clean: true,
    });
    device.on('message', (topic, payload) => {
      if (!topic.startsWith(`devices/redelivery-${run}-`)) return;
      const command = JSON.parse(payload.toString()) as { commandId: string };
      commands.push({ deviceId: topic.split('/')[1], commandId: command.commandId });
    });
    await device.subscribeAsync('devices/+/command', { qos: 1 });

    await producer.start();
    for (const [topic, observer, sink] of [
      [
        TOPICS.alarm,
        observers.alarm,
        (v: MessageView) => alarms.push(JSON.parse(v.body.toString()) as AlarmEvent),
      ],
      [TOPICS.deadLetter, observers.dlq, (v: MessageView) => deadLetters.push(v)],
    ] as const) {
      await observer.startup();
      await drainReceived(
        () => observer.receiveFrom(topic, 32, 10_000),
        (view) => observer.ack(view),
      );
      loops.push(
        (async () => {
          while (observing) {
            const views = await observer.receiveFrom(topic, 32, 10_000).catch(() => []);
            for (const view of views) sink(view);
            await Promise.all(views.map((view) => observer.ack(view).catch(() => undefined)));
          }
        })(),
      );
    }

    kernel = await startApp(
      'dmp-kernel',
      {
        ...kernelEnv(names, rulesDir, `127.0.0.1:${await freePort()}`),
        MQTT_URL: `mqtt://127.0.0.1:${relay.port}`,
        KERNEL_ALARM_SWEEP_MS: '100',
        KERNEL_ALARM_OUTBOX_RETRY_MS: '200',
        KERNEL_OUTBOX_RETRY_MAX_MS: '400',
        KERNEL_OUTBOX_MAX_ATTEMPTS: String(OUTBOX_MAX_ATTEMPTS),
        KERNEL_COMMAND_TIMEOUT_MS: String(COMMAND_TIMEOUT_MS),
        KERNEL_WEBHOOK_ALLOW_NETWORKS: '127.0.0.1/32',
      },
      { label: `redelivery-${run}-dmp-kernel` },
    );
    console.log(`redelivery e2e: run ${run}, logs .stack/logs/tests/redelivery-${run}-*.log`);
  });

  after(async () => {
    await kernel?.stop();
    observing = false;
    await Promise.all(loops);
    await Promise.allSettled([observers.alarm.shutdown(), observers.dlq.shutdown(), producer.stop()]);
    await device?.endAsync().catch(() => undefined);
    await relay.stop();
    hookReceiver?.close();
    await deleteKeys(redis, `${NAMESPACE}:*`);
    await redis.quit();
    await rm(rulesDir, { recursive: true, force: true });
  });

  it('evaluates each device message of a redelivered pack once: one alarm id, one command, one webhook', async () => {
    const [a, b] = [dev('a'), dev('b')];
    // b cannot be evaluated until its state key is repaired: the pack fails and comes again.
    await redis.set(`${NAMESPACE}:state:${b}`, 'not a hash');
    const skippedBefore = await readMetric(kernel!.baseUrl, 'dmp_kernel_rule_duplicates_total');
    const hotA = telemetry(a, 35);
    await sendPack([hotA, telemetry(a, 20), telemetry(b, 36)]);

    await waitFor('a raised and cleared', () => eventsOf(a, 'cleared').length === 1, { timeoutMs: 30_000 });
    await waitFor(
      "a redelivery of the pack, with a's messages skipped",
      async () =>
        (await readMetric(kernel!.baseUrl, 'dmp_kernel_rule_duplicates_total')) >= skippedBefore + 2,
      { timeoutMs: 30_000, intervalMs: 200 },
    );
    await redis.del(`${NAMESPACE}:state:${b}`);
    await waitFor('b raised once the pack went through', () => eventsOf(b, 'raised').length > 0, {
      timeoutMs: 60_000,
    });
    await waitFor(
      'b command and webhook',
      () => commands.some((c) => c.deviceId === b) && hooks.some((h) => h.deviceId === b),
      {
        timeoutMs: 15_000,
      },
    );

    const raised = eventsOf(a, 'raised');
    assert.equal(raised.length, 1, 'a raised once');
    assert.deepEqual(
      eventsOf(a, 'cleared').map((e) => e.alarmId),
      [raised[0].alarmId],
      'cleared under the id it was raised with',
    );
    assert.equal(raised[0].messageId, hotA.messageId);
    assert.equal(commands.filter((c) => c.deviceId === a).length, 1, 'one command to a');
    assert.equal(hooks.filter((h) => h.deviceId === a).length, 1, 'one webhook for a');
    assert.equal(eventsOf(b, 'raised').length, 1, 'b raised once');
  });

  it('keeps evaluating while a command is never acknowledged, then dead-letters it for replay', async () => {
    const [c, d] = [dev('c'), dev('d')];
    relay.withheld.add(`devices/${c}/command`);
    await sendPack([telemetry(c, 35), telemetry(d, 35)]);
    // The next pack of the same message group waits only for the evaluation, not for c's command.
    await waitFor('d raised', () => eventsOf(d, 'raised').length === 1, { timeoutMs: 30_000 });
    await sendPack([telemetry(d, 20)]);
    await waitFor('d cleared', () => eventsOf(d, 'cleared').length === 1, {
      timeoutMs: 30_000,
      intervalMs: 50,
    });
    const waiting = await outboxOf(c);
    assert.equal(waiting.length, 1, "c's command still waits for its PUBACK in the outbox");
    assert.ok(
      !deadLetters.length || !deadLetters.some((v) => v.properties.get(DeadLetterProperty.deviceId) === c),
    );
    assert.equal(commands.filter((x) => x.deviceId === d).length, 1, "d's command went out");

    const letter = await waitFor(
      "c's command dead-lettered",
      () => deadLetters.find((v) => v.properties.get(DeadLetterProperty.deviceId) === c),
      { timeoutMs: 60_000 },
    );
    assert.equal(letter.properties.get(DeadLetterProperty.source), DEAD_LETTER_SOURCE_KERNEL_OUTBOX);
    assert.equal(letter.properties.get(DeadLetterProperty.reason), 'max_delivery_attempts');
    assert.equal(letter.properties.get(DeadLetterProperty.errorCode), 'DMP_ERR_COMMAND_UNAVAILABLE');
    assert.equal(letter.properties.get(DeadLetterProperty.deliveryAttempt), String(OUTBOX_MAX_ATTEMPTS));
    const entry = outboxEntryOf(letter.body);
    assert.deepEqual(entry, waiting[0], 'the dead letter is the outbox entry');
    await waitFor('the outbox without it', async () => (await outboxOf(c)).length === 0);
    assert.equal(eventsOf(c, 'raised').length, 1, 'c raised once: its pack was not redelivered');
    assert.equal(commands.filter((x) => x.deviceId === c).length, 0);

    // Replay (what `dmp dead-letters replay --source dmp-kernel-outbox` does with it): once the broker
    // takes c's commands, the command goes out under its own id.
    relay.withheld.clear();
    await enqueueOutbox(redis, keys, [entry], Date.now());
    const replayed = await waitFor('the replayed command', () => commands.find((x) => x.deviceId === c), {
      timeoutMs: 30_000,
    });
    assert.equal(replayed.commandId, entry.kind === 'command' ? entry.command.commandId : '');
    await waitFor('the outbox empty again', async () => (await outboxOf(c)).length === 0);
  });
});
