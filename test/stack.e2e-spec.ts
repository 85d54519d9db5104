/**
 * The local stack is made of real servers: each test does one real round trip through one of them.
 * Run after `npm run stack:up` (the test command does it).
 */
import { createClient } from '@clickhouse/client';
import { mqttTraceProperties } from '@dmp/observability';
import {
  createRocketmqResources,
  silentClientLogger,
  stack,
  stackScript,
  waitFor,
  within,
} from '@dmp/testing';
import { OTLPTraceExporter } from '@opentelemetry/exporter-trace-otlp-grpc';
import { resourceFromAttributes } from '@opentelemetry/resources';
import { SimpleSpanProcessor, TracerProvider } from '@opentelemetry/sdk-trace';
import { Redis } from 'ioredis';
import mqtt from 'mqtt';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, describe, it } from 'node:test';
import { Producer, SimpleConsumer } from 'rocketmq-client-nodejs';

describe('local stack', () => {
  it('Mosquitto delivers an MQTT 5 message to a shared subscription with its user properties', async () => {
    const topic = `dmp/stack-check/${randomUUID()}`;
    const subscriber = await mqtt.connectAsync(stack.mqtt.url, {
      protocolVersion: 5,
      clientId: `sub-${randomUUID()}`,
    });
    const publisher = await mqtt.connectAsync(stack.mqtt.url, {
      protocolVersion: 5,
      clientId: `pub-${randomUUID()}`,
    });
    try {
      await subscriber.subscribeAsync(`$share/stack-check/${topic}`, { qos: 1 });
      const received = new Promise<{ payload: string; traceparent: unknown }>((resolve) =>
        subscriber.on('message', (_t, payload, packet) =>
          resolve({
            payload: payload.toString(),
            traceparent: packet.properties?.userProperties?.traceparent,
          }),
        ),
      );
      const traceparent = '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01';
      await publisher.publishAsync(topic, 'hello', {
        qos: 1,
        properties: { userProperties: { traceparent } },
      });
      assert.deepEqual(await received, { payload: 'hello', traceparent });
    } finally {
      await Promise.all([subscriber.endAsync(), publisher.endAsync()]);
    }
  });

  it('Mosquitto acknowledges a QoS 1 message of an untraced hop (no empty user property list)', async () => {
    // Mosquitto 2.0 never sends the PUBACK of a PUBLISH with an empty User Property list: a
    // linkage command sent with tracing off would wait for its timeout and fail.
    const publisher = await mqtt.connectAsync(stack.mqtt.url, {
      protocolVersion: 5,
      clientId: `pub-${randomUUID()}`,
    });
    try {
      const topic = `dmp/stack-check/${randomUUID()}`;
      const traceparent = '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01';
      for (const carrier of [{}, { traceparent }]) {
        // For QoS 1, mqtt.js resolves once the broker's PUBACK arrived.
        await within(
          5000,
          `the PUBACK of a message with ${JSON.stringify(mqttTraceProperties(carrier))}`,
          publisher.publishAsync(topic, 'hello', {
            qos: 1,
            properties: { contentType: 'application/json', ...mqttTraceProperties(carrier) },
          }),
        );
      }
    } finally {
      await publisher.endAsync();
    }
  });

  it("Mosquitto keeps a persistent session's queued message across a restart", async () => {
    // dmp-mqtt's session queues what devices send while it is away; the broker acknowledged those
    // messages to the devices, so a broker restart must not lose them (EMQX keeps them too).
    const topic = `dmp/stack-check/${randomUUID()}`;
    const clientId = `persistent-${randomUUID()}`;
    const session = {
      protocolVersion: 5,
      clientId,
      clean: false,
      properties: { sessionExpiryInterval: 300 },
    } as const;
    const subscriber = await mqtt.connectAsync(stack.mqtt.url, session);
    await subscriber.subscribeAsync(topic, { qos: 1 });
    await subscriber.endAsync();
    const publisher = await mqtt.connectAsync(stack.mqtt.url, {
      protocolVersion: 5,
      clientId: `pub-${randomUUID()}`,
    });
    await publisher.publishAsync(topic, 'kept', { qos: 1 });
    await publisher.endAsync();

    await stackScript('down', 'mosquitto');
    await stackScript('up', 'mosquitto');

    // The listener is in place before the CONNACK: the queued message follows it at once.
    const resumed = mqtt.connect(stack.mqtt.url, session);
    try {
      const received = new Promise<string>((resolve) =>
        resumed.on('message', (_t, payload) => resolve(payload.toString())),
      );
      assert.equal(await within(10_000, 'the queued message after the restart', received), 'kept');
    } finally {
      await resumed.endAsync();
    }
  });

  it('RocketMQ stores a message and delivers it to a consumer group over gRPC', async () => {
    const topic = 'dmp_stack_check';
    await createRocketmqResources({
      topics: { [topic]: 'NORMAL' },
      groups: { dmp_stack_check: 'concurrently' },
    });
    const options = {
      endpoints: stack.rocketmq.endpoints,
      namespace: stack.rocketmq.namespace,
      logger: silentClientLogger,
    };
    const producer = new Producer({ ...options, topic });
    const consumer = new SimpleConsumer({
      ...options,
      consumerGroup: 'dmp_stack_check',
      subscriptions: new Map([[topic, '*']]),
      awaitDuration: 5_000,
    });
    await Promise.all([producer.startup(), consumer.startup()]);
    after(() => Promise.all([producer.shutdown(), consumer.shutdown()]));

    const marker = randomUUID();
    await producer.send({
      topic,
      body: Buffer.from(marker),
      keys: [marker],
      properties: new Map([['marker', marker]]),
    });
    const found = await waitFor(
      'the message back from RocketMQ',
      async () => {
        for (const message of await consumer.receive(32, 15_000)) {
          await consumer.ack(message);
          if (message.body.toString() === marker) return message;
        }
        return undefined;
      },
      { timeoutMs: 60_000, intervalMs: 0 },
    );
    assert.equal(found.properties.get('marker'), marker);
  });

  it('ClickHouse writes and reads back a row', async () => {
    const database = `dmp_stack_check_${process.pid}`;
    const client = createClient({
      url: stack.clickhouse.url,
      username: stack.clickhouse.username,
      password: stack.clickhouse.password,
    });
    try {
      await client.command({ query: `CREATE DATABASE IF NOT EXISTS ${database}` });
      await client.command({
        query: `CREATE TABLE ${database}.check (id String, v UInt64) ENGINE = ReplacingMergeTree(v) ORDER BY id`,
      });
      await client.insert({
        table: `${database}.check`,
        values: [
          { id: 'a', v: 1 },
          { id: 'a', v: 2 },
        ],
        format: 'JSONEachRow',
      });
      const rows = await (
        await client.query({ query: `SELECT id, v FROM ${database}.check FINAL`, format: 'JSONEachRow' })
      ).json();
      assert.deepEqual(rows, [{ id: 'a', v: '2' }]);
    } finally {
      await client.command({ query: `DROP DATABASE IF EXISTS ${database}` });
      await client.close();
    }
  });

  it('Redis stores and returns a key', async () => {
    const redis = new Redis(stack.redis.url);
    try {
      const key = `dmp:stack-check:${randomUUID()}`;
      await redis.set(key, 'ok', 'EX', 60);
      assert.equal(await redis.get(key), 'ok');
    } finally {
      redis.disconnect();
    }
  });

  it('Redis keeps its keys across a restart (the device registry lives there)', async () => {
    const key = `dmp:stack-check:${randomUUID()}`;
    const redis = new Redis(stack.redis.url);
    await redis.set(key, 'kept', 'EX', 300);
    redis.disconnect();
    await stackScript('down', 'redis');
    await stackScript('up', 'redis');
    const restarted = new Redis(stack.redis.url);
    try {
      assert.equal(await restarted.get(key), 'kept');
    } finally {
      restarted.disconnect();
    }
  });

  it('Jaeger accepts an OTLP span and returns it through its query API', async () => {
    const service = `dmp-stack-check-${randomUUID().slice(0, 8)}`;
    const provider = new TracerProvider({
      resource: resourceFromAttributes({ 'service.name': service }),
      spanProcessors: [
        new SimpleSpanProcessor({ exporter: new OTLPTraceExporter({ url: stack.telemetry.otlpEndpoint }) }),
      ],
    });
    const span = provider.getTracer('stack-check').startSpan('stack check');
    const traceId = span.spanContext().traceId;
    span.end();
    await provider.forceFlush();
    await provider.shutdown();

    const trace = await waitFor('the span in Jaeger', async () => {
      const response = await fetch(`${stack.jaegerQueryUrl}/api/traces/${traceId}`);
      if (!response.ok) return undefined;
      const body = (await response.json()) as { data: { spans: { operationName: string }[] }[] };
      return body.data[0];
    });
    assert.equal(trace.spans[0]?.operationName, 'stack check');
  });

  it('Prometheus lists the three apps as scrape targets', async () => {
    const response = await fetch(`${stack.prometheusUrl}/api/v1/targets`);
    const body = (await response.json()) as { data: { activeTargets: { labels: { job: string } }[] } };
    const jobs = new Set(body.data.activeTargets.map((target) => target.labels.job));
    for (const job of ['dmp-mqtt', 'dmp-kernel', 'dmp-data'])
      assert.ok(jobs.has(job), `Prometheus has no job ${job}`);
  });
});
