/**
 * @dmp/messaging on RocketMQ with two brokers: the local stack's cluster profile (`scripts/stack.sh up
 * rocketmq-cluster`, part of `up --cluster`: name server 127.0.0.1:9877, brokers broker-a and broker-b,
 * a proxy in cluster mode on 127.0.0.1:8091), brought up here if it is not running, and brought down
 * again only if none of it was running before. The project's producer sends keyed FIFO messages (one
 * message group per device, as the apps do) for many devices through that proxy, and its consumer
 * server receives them: every device's messages in order, and both brokers stored a share of them (the
 * brokers' queue offsets, `scripts/stack.sh queues --cluster`). Own topic and group `dmp_cluster_test`,
 * created here on both brokers. The default stack's RocketMQ is not used.
 */
import {
  RocketMqConsumerServer,
  RocketMqExceptionFilter,
  RocketMqProducer,
  type RocketMqMessage,
} from '@dmp/messaging';
import {
  createRocketmqResources,
  runningStackProcs,
  silentNestLogger,
  stackScript,
  waitFor,
} from '@dmp/testing';
import { Controller, Module, UseFilters, type INestApplication } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { EventPattern, Payload } from '@nestjs/microservices';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, it } from 'node:test';

/** The cluster profile's proxy: what the apps use as ROCKETMQ_ENDPOINTS to run on two brokers. */
const ENDPOINTS = '127.0.0.1:8091';
/** Its name server, where the test creates its topic and group on every broker. */
const NAME_SERVER = '127.0.0.1:9877';
const TOPIC = 'dmp_cluster_test';
const GROUP = 'dmp_cluster_test';
const BROKERS = ['broker-a', 'broker-b'];
const PROCS = [
  'rocketmq-cluster-namesrv',
  'rocketmq-broker-a',
  'rocketmq-broker-b',
  'rocketmq-cluster-proxy',
];
const DEVICES = Array.from({ length: 200 }, (_, i) => `rc-dev-${String(i).padStart(3, '0')}`);
const PER_DEVICE = 10;
const run = randomBytes(3).toString('hex');

interface Body {
  run: string;
  device: string;
  seq: number;
}
/** This run's messages, in the order the handler got them (earlier runs' leftovers are acknowledged). */
const handled: Body[] = [];

@Controller()
@UseFilters(RocketMqExceptionFilter)
class ClusterTestController {
  @EventPattern<string>(TOPIC)
  onMessage(@Payload() message: RocketMqMessage) {
    const body = JSON.parse(message.body.toString()) as Body;
    if (body.run === run) handled.push(body);
  }
}

@Module({ controllers: [ClusterTestController] })
class ClusterTestModule {}

/** Messages each broker has stored on the topic: the sum of its queues' max offsets. */
async function storedPerBroker(): Promise<Map<string, number>> {
  const stored = new Map(BROKERS.map((broker) => [broker, 0]));
  for (const line of (await stackScript('queues', '--cluster', TOPIC)).split('\n')) {
    const [topic, broker, , , maxOffset] = line.split(' ');
    if (topic === TOPIC) stored.set(broker, (stored.get(broker) ?? 0) + Number(maxOffset));
  }
  return stored;
}

describe('@dmp/messaging on RocketMQ with two brokers (cluster profile)', { timeout: 300_000 }, () => {
  const producer = new RocketMqProducer({
    endpoints: ENDPOINTS,
    namespace: '',
    topics: [TOPIC],
    serviceName: 'rocketmq-cluster-e2e',
    logger: silentNestLogger,
  });
  const server = new RocketMqConsumerServer({
    endpoints: ENDPOINTS,
    namespace: '',
    group: GROUP,
    topics: [TOPIC],
    logger: silentNestLogger,
  });
  let app: INestApplication | undefined;
  let wasRunning: string[] = [];

  before(async () => {
    wasRunning = await runningStackProcs(PROCS, 'rocketmq-cluster');
    await stackScript('up', 'rocketmq-cluster');
    await createRocketmqResources(
      { topics: { [TOPIC]: 'FIFO' }, groups: { [GROUP]: 'orderly' } },
      { nameServer: NAME_SERVER },
    );
    await producer.start();
    app = await NestFactory.create(ClusterTestModule, { logger: false });
    app.connectMicroservice({ strategy: server });
    await app.init();
    await app.startAllMicroservices();
  });

  after(async () => {
    await app?.close();
    await producer.stop();
    if (wasRunning.length === 0) await stackScript('down', 'rocketmq-cluster');
  });

  it('spreads the devices over both brokers and hands each device its messages in order', async () => {
    const storedBefore = await storedPerBroker();
    const started = Date.now();
    // Each device's messages one after the other (that is the order to keep), the devices at once.
    await Promise.all(
      DEVICES.map(async (device) => {
        for (let seq = 0; seq < PER_DEVICE; seq++)
          await producer.send({
            topic: TOPIC,
            body: Buffer.from(JSON.stringify({ run, device, seq } satisfies Body)),
            messageGroup: device,
            keys: [`${device}-${seq}`],
          });
      }),
    );
    const total = DEVICES.length * PER_DEVICE;
    console.log(`# ${total} messages of ${DEVICES.length} devices sent in ${Date.now() - started} ms`);

    const storedAfter = await storedPerBroker();
    const onBroker = BROKERS.map((broker) => storedAfter.get(broker)! - storedBefore.get(broker)!);
    console.log(`# stored: ${BROKERS.map((broker, i) => `${broker} ${onBroker[i]}`).join(', ')}`);
    assert.equal(
      onBroker.reduce((a, b) => a + b),
      total,
    );
    // The proxy hashes the message group over the queues of both brokers (8 each): ~half each.
    for (const [i, broker] of BROKERS.entries())
      assert.ok(onBroker[i] > total / 4, `${broker} stored ${onBroker[i]} of ${total}`);

    await waitFor(
      () => `all ${total} messages handled (${handled.length} so far)`,
      () => handled.length >= total,
      { timeoutMs: 120_000, intervalMs: 500 },
    );
    console.log(`# all handled ${Date.now() - started} ms after the first send`);
    const seqsOf = new Map<string, number[]>(DEVICES.map((device) => [device, []]));
    for (const { device, seq } of handled) seqsOf.get(device)!.push(seq);
    const inOrder = Array.from({ length: PER_DEVICE }, (_, seq) => seq);
    for (const [device, seqs] of seqsOf) assert.deepEqual(seqs, inOrder, device);
  });
});
