/**
 * @dmp/messaging against the real RocketMQ proxy (scripts/stack.sh): own topics
 * `dmp_messaging_test` (NORMAL) and `dmp_messaging_test_fifo` (FIFO), own groups
 * `dmp_messaging_test`, `dmp_messaging_test_fifo` (orderly) and `dmp_messaging_test_dlq` (reads
 * the shared `dmp_dead_letter` topic), created by the test.
 * Spans are recorded in memory by a tracer provider registered here.
 */
import { DmpError } from '@dmp/contracts';
import {
  MessagingErrorCode,
  RocketMqConsumerServer,
  RocketMqContext,
  RocketMqExceptionFilter,
  RocketMqProducer,
  type RocketMqConsumerServerOptions,
  type RocketMqMessage,
} from '@dmp/messaging';
import { MetricsRegistry } from '@dmp/observability';
import {
  createRocketmqResources,
  drainReceived,
  metricSum,
  silentClientLogger,
  silentNestLogger,
  stack,
  waitFor,
} from '@dmp/testing';
import { Controller, Module, UseFilters, type INestApplication } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { Ctx, EventPattern, Payload } from '@nestjs/microservices';
import { context, propagation, SpanKind, trace, type SpanContext } from '@opentelemetry/api';
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks';
import { W3CTraceContextPropagator } from '@opentelemetry/core';
import { InMemorySpanExporter, SimpleSpanProcessor, TracerProvider } from '@opentelemetry/sdk-trace';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { SimpleConsumer, type MessageView } from 'rocketmq-client-nodejs';

const NORMAL = 'dmp_messaging_test';
const FIFO = 'dmp_messaging_test_fifo';
const DEAD_LETTER = stack.rocketmq.topics.deadLetter;
const { endpoints, namespace } = stack.rocketmq;
const run = randomBytes(3).toString('hex');

const spans = new InMemorySpanExporter();
context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable());
propagation.setGlobalPropagator(new W3CTraceContextPropagator());
trace.setGlobalTracerProvider(
  new TracerProvider({ spanProcessors: [new SimpleSpanProcessor({ exporter: spans })] }),
);
const tracer = trace.getTracer('messaging-e2e');

/** What the handlers saw, in handling order. */
interface Handled {
  key: string;
  group?: string;
  attempt: number;
  message: RocketMqMessage;
  span?: SpanContext;
  ctxTopic: string;
  ctxGroup: string;
}
const handled: Handled[] = [];
/** Per message key (keys[0]): what the handler does after recording the message. */
const behaviour = new Map<string, (message: RocketMqMessage) => Promise<void> | void>();
let concurrent = 0;
let maxConcurrent = 0;

async function handle(message: RocketMqMessage, ctx: RocketMqContext): Promise<void> {
  const key = message.keys[0] ?? '';
  handled.push({
    key,
    group: message.messageGroup,
    attempt: message.deliveryAttempt,
    message,
    span: trace.getActiveSpan()?.spanContext(),
    ctxTopic: ctx.getTopic(),
    ctxGroup: ctx.getConsumerGroup(),
  });
  concurrent += 1;
  maxConcurrent = Math.max(maxConcurrent, concurrent);
  try {
    await behaviour.get(key)?.(message);
  } finally {
    concurrent -= 1;
  }
}

@Controller()
@UseFilters(RocketMqExceptionFilter)
class TestConsumerController {
  // The explicit type argument picks the untyped overload, so the context parameter can be typed.
  @EventPattern<string>(NORMAL)
  onNormal(@Payload() message: RocketMqMessage, @Ctx() ctx: RocketMqContext) {
    return handle(message, ctx);
  }
  @EventPattern<string>(FIFO)
  onFifo(@Payload() message: RocketMqMessage, @Ctx() ctx: RocketMqContext) {
    return handle(message, ctx);
  }
}

@Module({ controllers: [TestConsumerController] })
class TestModule {}

/** Acks whatever a group still has on a topic (left over by earlier runs); returns their keys. */
async function drain(group: string, topic: string): Promise<string[]> {
  const consumer = new SimpleConsumer({
    endpoints,
    namespace,
    consumerGroup: group,
    subscriptions: new Map([[topic, '*']]),
    awaitDuration: 5_000,
    logger: silentClientLogger,
  });
  await consumer.startup();
  const drained = await drainReceived(
    () => consumer.receive(32, 10_000),
    (view) => consumer.ack(view),
  );
  await consumer.shutdown();
  return drained.map((view) => view.keys[0] ?? '');
}

const handledFor = (key: string) => handled.filter((h) => h.key === key);
/** The ended process span of a message: its `dmp.messaging.outcome` says how it was settled. */
const processSpanOf = (messageId: string) =>
  spans
    .getFinishedSpans()
    .find((s) => s.name.startsWith('process ') && s.attributes['messaging.message.id'] === messageId);

describe('@dmp/messaging on the real RocketMQ proxy', { timeout: 300_000 }, () => {
  const metrics = new MetricsRegistry('messaging-e2e');
  const producer = new RocketMqProducer({
    endpoints,
    namespace,
    topics: [NORMAL, FIFO, DEAD_LETTER],
    serviceName: 'messaging-e2e',
    logger: silentNestLogger,
    metrics,
  });
  const common: Omit<RocketMqConsumerServerOptions, 'group' | 'topics'> = {
    endpoints,
    namespace,
    deadLetterTopic: DEAD_LETTER,
    producer,
    metrics,
    logger: silentNestLogger,
    retryDelayMs: 1_000,
    maxDeliveryAttempts: 3,
  };
  const normalServer = new RocketMqConsumerServer({
    ...common,
    group: 'dmp_messaging_test',
    topics: [NORMAL],
  });
  const fifoServer = new RocketMqConsumerServer({
    ...common,
    group: 'dmp_messaging_test_fifo',
    topics: [FIFO],
  });
  let app: INestApplication;
  let deadLetters: SimpleConsumer;
  const deadLettered: MessageView[] = [];
  let dlqPolling = true;
  let dlqLoop: Promise<void> | undefined;

  before(async () => {
    await createRocketmqResources({
      topics: { [NORMAL]: 'NORMAL', [FIFO]: 'FIFO' },
      groups: {
        dmp_messaging_test: 'concurrently',
        dmp_messaging_test_fifo: 'orderly',
        dmp_messaging_test_dlq: 'concurrently',
      },
    });
    await Promise.all([
      drain('dmp_messaging_test', NORMAL),
      drain('dmp_messaging_test_fifo', FIFO),
      drain('dmp_messaging_test_dlq', DEAD_LETTER),
    ]);
    deadLetters = new SimpleConsumer({
      endpoints,
      namespace,
      consumerGroup: 'dmp_messaging_test_dlq',
      subscriptions: new Map([[DEAD_LETTER, '*']]),
      awaitDuration: 5_000,
      logger: silentClientLogger,
    });
    await deadLetters.startup();
    dlqLoop = (async () => {
      while (dlqPolling) {
        const views = await deadLetters.receive(32, 10_000).catch(() => []);
        for (const view of views) {
          deadLettered.push(view);
          await deadLetters.ack(view);
        }
      }
    })();

    const started = Date.now();
    await producer.start();
    app = await NestFactory.create(TestModule, { logger: false });
    app.connectMicroservice({ strategy: normalServer });
    app.connectMicroservice({ strategy: fifoServer });
    await app.init();
    await app.startAllMicroservices();
    console.log(`# producer + 2 consumer servers started in ${Date.now() - started} ms`);
  });

  after(async () => {
    await app?.close();
    await producer.stop();
    dlqPolling = false;
    await dlqLoop;
    await deadLetters?.shutdown();
  });

  it('sends with a PRODUCER span and the handler runs in a CONSUMER span of the same trace', async () => {
    const key = `trace-${run}`;
    const root = tracer.startSpan('e2e root');
    const { messageId } = await context.with(trace.setSpan(context.active(), root), () =>
      producer.send({
        topic: NORMAL,
        body: Buffer.from(JSON.stringify({ hello: 'world' })),
        keys: [key],
        tag: 'e2e',
        properties: { dmp_device_id: 'device-1' },
      }),
    );
    root.end();
    assert.match(messageId, /^[0-9A-F]{16,}$/i);

    const [seen] = await waitFor('the message handled', () => handledFor(key).length > 0 && handledFor(key));
    assert.ok(seen);
    const traceId = root.spanContext().traceId;
    assert.equal(seen.message.messageId, messageId);
    assert.equal(seen.message.topic, NORMAL);
    assert.deepEqual(JSON.parse(seen.message.body.toString()), { hello: 'world' });
    assert.equal(seen.message.tag, 'e2e');
    assert.equal(seen.message.properties.dmp_device_id, 'device-1');
    assert.equal(seen.message.deliveryAttempt, 1);
    assert.ok(seen.message.bornTimestamp instanceof Date);
    assert.equal(seen.ctxTopic, NORMAL);
    assert.equal(seen.ctxGroup, 'dmp_messaging_test');
    assert.match(seen.message.properties.traceparent ?? '', new RegExp(`^00-${traceId}-[0-9a-f]{16}-01$`));
    assert.equal(seen.span?.traceId, traceId, 'handler runs inside the trace of the producer');

    const finished = await waitFor('process span ended', () => {
      const all = spans.getFinishedSpans();
      const send = all.find((s) => s.name === `send ${NORMAL}` && s.spanContext().traceId === traceId);
      const process = all.find((s) => s.name === `process ${NORMAL}` && s.spanContext().traceId === traceId);
      return send && process && { send, process };
    });
    const { send, process } = finished;
    assert.equal(send.kind, SpanKind.PRODUCER);
    assert.equal(send.parentSpanContext?.spanId, root.spanContext().spanId);
    assert.equal(send.attributes['messaging.system'], 'rocketmq');
    assert.equal(send.attributes['messaging.destination.name'], NORMAL);
    assert.equal(send.attributes['messaging.operation.type'], 'send');
    assert.equal(send.attributes['messaging.message.id'], messageId);
    assert.equal(send.attributes['messaging.rocketmq.message.tag'], 'e2e');
    assert.deepEqual(send.attributes['messaging.rocketmq.message.keys'], [key]);
    assert.equal(seen.message.properties.traceparent, `00-${traceId}-${send.spanContext().spanId}-01`);

    assert.equal(process.kind, SpanKind.CONSUMER);
    assert.equal(
      process.parentSpanContext?.spanId,
      send.spanContext().spanId,
      'process span is a child of the send span',
    );
    assert.equal(seen.span?.spanId, process.spanContext().spanId);
    assert.equal(process.attributes['messaging.consumer.group.name'], 'dmp_messaging_test');
    assert.equal(process.attributes['messaging.message.id'], messageId);
    assert.equal(process.attributes['messaging.operation.type'], 'process');
    assert.equal(process.attributes['messaging.rocketmq.namespace'], namespace);
    assert.equal(process.attributes['dmp.messaging.outcome'], 'ack');

    const text = await metrics.registry.metrics();
    assert.match(
      text,
      new RegExp(`dmp_rocketmq_sent_total\\{[^}]*topic="${NORMAL}",result="ok"[^}]*\\} [1-9]`),
    );
    assert.match(
      text,
      new RegExp(`dmp_rocketmq_settled_total\\{[^}]*topic="${NORMAL}",outcome="ack"[^}]*\\} [1-9]`),
    );
    assert.match(
      text,
      new RegExp(`dmp_rocketmq_delivery_delay_seconds_count\\{[^}]*topic="${NORMAL}"[^}]*\\} [1-9]`),
    );
  });

  it('keeps the order of each message group while groups run concurrently', async () => {
    const groups = ['a', 'b', 'c', 'd'].map((g) => `order-${run}-${g}`);
    const perGroup = 15;
    maxConcurrent = 0;
    for (const group of groups)
      for (let i = 0; i < perGroup; i++)
        // A random pause per message: any concurrency within a group would reorder.
        behaviour.set(`${group}-${i}`, () => sleep(Math.random() * 15));
    await Promise.all(
      groups.map(async (group) => {
        for (let i = 0; i < perGroup; i++)
          await producer.send({
            topic: FIFO,
            body: Buffer.from(String(i)),
            messageGroup: group,
            keys: [`${group}-${i}`],
          });
      }),
    );
    await waitFor(
      'every ordered message handled',
      () =>
        groups.every(
          (group) => new Set(handled.filter((h) => h.group === group).map((h) => h.key)).size === perGroup,
        ),
      { timeoutMs: 60_000 },
    );
    for (const group of groups) {
      const order = handled.filter((h) => h.group === group).map((h) => Number(h.message.body.toString()));
      assert.deepEqual(
        order,
        Array.from({ length: perGroup }, (_, i) => i),
        `order of ${group}`,
      );
    }
    assert.ok(maxConcurrent > 1, `groups are handled concurrently (max ${maxConcurrent} at once)`);
  });

  it('redelivers after a retryable error, and a later message of its group waits for it', async () => {
    const group = `retry-${run}`;
    const keys = [0, 1, 2, 3].map((i) => `${group}-${i}`);
    let failures = 0;
    behaviour.set(keys[1], (message) => {
      if (message.deliveryAttempt === 1) {
        failures += 1;
        throw new DmpError('DMP_ERR_E2E_TRANSIENT', 'try again', true);
      }
    });
    for (const [i, key] of keys.entries())
      await producer.send({ topic: FIFO, body: Buffer.from(String(i)), messageGroup: group, keys: [key] });

    await waitFor('all four handled successfully', () => handledFor(keys[3]).length > 0, {
      timeoutMs: 60_000,
    });
    assert.equal(failures, 1);
    const attempts = handledFor(keys[1]).map((h) => h.attempt);
    assert.deepEqual(attempts.slice(0, 2), [1, 2], 'failed once, then redelivered as attempt 2');
    // Nothing after message 1 was handled before message 1 succeeded on its redelivery.
    const sequence = handled.filter((h) => h.group === group).map((h) => `${h.key.slice(-1)}@${h.attempt}`);
    const firstRetry = sequence.indexOf('1@2');
    assert.ok(firstRetry > 0, sequence.join(' '));
    assert.ok(
      sequence.slice(0, firstRetry).every((s) => s.startsWith('0') || s === '1@1'),
      `nothing after 1 ran before its redelivery: ${sequence.join(' ')}`,
    );
    const firstSuccess = (k: string) => sequence.findIndex((s) => s.startsWith(k) && s !== '1@1');
    assert.ok(
      firstSuccess('0') < firstSuccess('1') &&
        firstSuccess('1') < firstSuccess('2') &&
        firstSuccess('2') < firstSuccess('3'),
    );
    const text = await metrics.registry.metrics();
    assert.match(
      text,
      new RegExp(`dmp_rocketmq_settled_total\\{[^}]*topic="${FIFO}",outcome="retry"[^}]*\\} [1-9]`),
    );
  });

  it('acknowledges unhandled a replay meant for another consumer group, and handles one meant for its own', async () => {
    const [other, own] = [`replay-other-${run}`, `replay-own-${run}`];
    const skipped = async () =>
      metricSum(await metrics.registry.metrics(), 'dmp_rocketmq_settled_total', {
        topic: NORMAL,
        outcome: 'skipped',
      });
    const skippedBefore = await skipped();
    await producer.send({
      topic: NORMAL,
      body: Buffer.from('replay'),
      keys: [other],
      properties: { dmp_replay_for_group: 'dmp_kernel_rules' },
    });
    await producer.send({
      topic: NORMAL,
      body: Buffer.from('replay'),
      keys: [own],
      properties: { dmp_replay_for_group: 'dmp_messaging_test' },
    });
    await waitFor('the replay for this group handled', () => handledFor(own).length > 0, {
      timeoutMs: 30_000,
    });
    await waitFor(
      'the replay for another group acknowledged',
      async () => (await skipped()) > skippedBefore,
      {
        timeoutMs: 30_000,
      },
    );
    assert.deepEqual(handledFor(other), [], 'never handed to the handler');
  });

  it('dead-letters a message whose handler fails with a non-retryable DmpError, with the error and origin', async () => {
    const key = `poison-${run}`;
    behaviour.set(key, () => {
      throw new DmpError('DMP_ERR_E2E_POISON', 'cannot ever process this', false);
    });
    const body = Buffer.from('{"broken":');
    const { messageId } = await producer.send({
      topic: NORMAL,
      body,
      keys: [key],
      properties: { dmp_device_id: 'dev-x' },
    });

    const dead = await waitFor(
      'the dead letter',
      () => deadLettered.find((view) => view.properties.get('dmp_source_message_id') === messageId),
      { timeoutMs: 30_000 },
    );
    assert.equal(dead.topic, DEAD_LETTER);
    assert.deepEqual(dead.body, body);
    assert.equal(dead.properties.get('dmp_error_code'), 'DMP_ERR_E2E_POISON');
    assert.equal(dead.properties.get('dmp_error_message'), 'cannot ever process this');
    assert.equal(dead.properties.get('dmp_source_topic'), NORMAL);
    assert.equal(dead.properties.get('dmp_consumer_group'), 'dmp_messaging_test');
    assert.equal(dead.properties.get('dmp_dead_letter_reason'), 'non_retryable');
    assert.equal(dead.properties.get('dmp_device_id'), 'dev-x', 'original properties are kept');
    assert.ok(dead.keys.includes(messageId) && dead.keys.includes(key));
    // The dead letter continues the trace of the failed message.
    const [first] = handledFor(key);
    assert.ok(dead.properties.get('traceparent')?.includes(first.span!.traceId));
    // Settled (acked, so never handled again) once its process span ends as dead-lettered: a failed
    // ack would end it as 'retry'.
    const processed = await waitFor('the poison message settled', () => processSpanOf(messageId));
    assert.equal(processed.attributes['dmp.messaging.outcome'], 'dead_letter');
    assert.equal(handledFor(key).length, 1);
  });

  it('dead-letters a FIFO message to the NORMAL dead-letter topic, and its group goes on', async () => {
    const group = `fifo-poison-${run}`;
    const [poison, next] = [`${group}-0`, `${group}-1`];
    behaviour.set(poison, () => {
      throw new DmpError('DMP_ERR_E2E_POISON', 'bad fifo message', false);
    });
    const { messageId } = await producer.send({
      topic: FIFO,
      body: Buffer.from('p'),
      messageGroup: group,
      keys: [poison],
    });
    await producer.send({ topic: FIFO, body: Buffer.from('n'), messageGroup: group, keys: [next] });
    const dead = await waitFor(
      'the FIFO dead letter',
      () => deadLettered.find((view) => view.properties.get('dmp_source_message_id') === messageId),
      { timeoutMs: 30_000 },
    );
    assert.equal(dead.messageGroup || undefined, undefined, 'a NORMAL message');
    assert.equal(dead.properties.get('dmp_source_message_group'), group);
    assert.equal(dead.properties.get('dmp_source_topic'), FIFO);
    await waitFor('the next message of the group handled', () => handledFor(next).length > 0);
  });

  it('dead-letters a message that keeps failing retryably after maxDeliveryAttempts', async () => {
    const key = `exhaust-${run}`;
    behaviour.set(key, () => {
      throw new Error('still broken');
    });
    const { messageId } = await producer.send({ topic: NORMAL, body: Buffer.from('x'), keys: [key] });
    const dead = await waitFor(
      'the dead letter after 3 attempts',
      () => deadLettered.find((view) => view.properties.get('dmp_source_message_id') === messageId),
      { timeoutMs: 60_000 },
    );
    assert.deepEqual(
      handledFor(key).map((h) => h.attempt),
      [1, 2, 3],
    );
    assert.equal(dead.properties.get('dmp_dead_letter_reason'), 'max_delivery_attempts');
    assert.equal(dead.properties.get('dmp_error_code'), 'DMP_ERR_HANDLER');
    assert.equal(dead.properties.get('dmp_error_message'), 'still broken');
    assert.equal(dead.properties.get('dmp_delivery_attempt'), '3');
  });

  it('keeps a slow message invisible while its handler runs (no duplicate delivery)', async () => {
    const server = new RocketMqConsumerServer({
      ...common,
      group: 'dmp_messaging_test',
      topics: [NORMAL],
      invisibleMs: 10_000,
    });
    await normalServer.close();
    const slowApp = await NestFactory.create(TestModule, { logger: false });
    slowApp.connectMicroservice({ strategy: server });
    await slowApp.init();
    await slowApp.startAllMicroservices();
    try {
      const key = `slow-${run}`;
      const renewals = async () =>
        metricSum(await metrics.registry.metrics(), 'dmp_rocketmq_invisible_renewals_total', {
          topic: NORMAL,
        });
      const renewedBefore = await renewals();
      // The handler outlasts its first receipt handle's 10 s of invisibility (the fault), and ends as
      // soon as that is over and the server has renewed it: without renewal RocketMQ refuses the ack of
      // the expired receipt handle (outcome 'retry') and hands the message out again.
      behaviour.set(key, async () => {
        const firstReceiptExpires = Date.now() + 10_000;
        await waitFor('the invisibility renewed', async () => (await renewals()) > renewedBefore, {
          timeoutMs: 15_000,
          intervalMs: 100,
        });
        await sleep(Math.max(0, firstReceiptExpires + 1_000 - Date.now()));
      });
      const { messageId } = await producer.send({ topic: NORMAL, body: Buffer.from('slow'), keys: [key] });
      const processed = await waitFor('the slow message settled', () => processSpanOf(messageId), {
        timeoutMs: 30_000,
      });
      assert.equal(processed.attributes['dmp.messaging.outcome'], 'ack');
      assert.equal(handledFor(key).length, 1);
      const text = await metrics.registry.metrics();
      assert.match(
        text,
        new RegExp(`dmp_rocketmq_invisible_renewals_total\\{[^}]*topic="${NORMAL}"[^}]*\\} [1-9]`),
      );
    } finally {
      await slowApp.close();
    }
  });

  it('close() waits for in-flight handlers, then acks them', async () => {
    const key = `drain-${run}`;
    let finished = false;
    behaviour.set(key, async () => {
      await sleep(2_000);
      finished = true;
    });
    await producer.send({ topic: FIFO, body: Buffer.from('d'), messageGroup: key, keys: [key] });
    await waitFor('the message in flight', () => handledFor(key).length > 0);
    assert.equal(fifoServer.inFlight, 1);
    await fifoServer.close();
    assert.equal(finished, true, 'close() returned only after the handler finished');
    assert.equal(fifoServer.inFlight, 0);
    assert.equal(fifoServer.isReady(), false);
    // Acked before the consumer stopped: not delivered again.
    assert.ok(!(await drain('dmp_messaging_test_fifo', FIFO)).includes(key));
  });

  it('consumes several topics with one server, the busy one not slowed by long polls on the idle one', async () => {
    // The FIFO server is closed by now; this one takes its group, for both topics. That group also
    // gets what earlier tests sent to the NORMAL topic (a slow handler…): handle those plainly now.
    // (An orderly group consumes a NORMAL topic orderly too: one slow message holds up its queue.)
    behaviour.clear();
    const server = new RocketMqConsumerServer({
      ...common,
      group: 'dmp_messaging_test_fifo',
      topics: [FIFO, NORMAL],
    });
    const multiApp = await NestFactory.create(TestModule, { logger: false });
    multiApp.connectMicroservice({ strategy: server });
    await multiApp.init();
    await multiApp.startAllMicroservices();
    try {
      // Warm-up: the group's first receive on a topic it never consumed sets its offsets.
      const warmUp = `multi-${run}-warm-up`;
      await producer.send({ topic: NORMAL, body: Buffer.from('w'), keys: [warmUp] });
      await waitFor('the warm-up message handled', () => handledFor(warmUp).length > 0, {
        timeoutMs: 30_000,
      });
      const keys = Array.from({ length: 200 }, (_, i) => `multi-${run}-${i}`);
      const started = Date.now();
      await Promise.all(
        keys.map((key) => producer.send({ topic: NORMAL, body: Buffer.from(key), keys: [key] })),
      );
      await waitFor(
        '200 messages of the busy topic handled',
        () => keys.every((key) => handledFor(key).length > 0),
        {
          timeoutMs: 30_000,
        },
      );
      const elapsed = Date.now() - started;
      console.log(`# 200 messages sent and handled in ${elapsed} ms with an idle second topic`);
      // Alternating receive() calls would wait ~5 s on the idle topic about every other call (tens of
      // seconds for 200 messages); the bound leaves room for a loaded machine.
      assert.ok(elapsed < 10_000, `took ${elapsed} ms`);
      const fifoKey = `multi-${run}-fifo`;
      await producer.send({ topic: FIFO, body: Buffer.from('f'), messageGroup: fifoKey, keys: [fifoKey] });
      await waitFor('the FIFO message handled too', () => handledFor(fifoKey).length > 0);
    } finally {
      await multiApp.close();
    }
  });

  it('fails to start with an error naming the endpoint when the proxy is unreachable or a topic is missing', async () => {
    const unreachable = new RocketMqProducer({
      endpoints: '127.0.0.1:1',
      namespace,
      topics: [NORMAL],
      serviceName: 'messaging-e2e',
      logger: silentNestLogger,
      startupTimeoutMs: 3_000,
    });
    await assert.rejects(unreachable.start(), (error: DmpError) => {
      assert.equal(error.code, MessagingErrorCode.Unavailable);
      assert.match(error.message, /127\.0\.0\.1:1/);
      return true;
    });
    const missing = new RocketMqProducer({
      endpoints,
      namespace,
      topics: [`dmp_no_such_topic_${run}`],
      serviceName: 'messaging-e2e',
      logger: silentNestLogger,
    });
    await assert.rejects(missing.start(), (error: DmpError) => {
      assert.equal(error.code, MessagingErrorCode.Unavailable);
      assert.match(error.message, new RegExp(`dmp_no_such_topic_${run}`));
      assert.match(error.message, /No topic route info/);
      return true;
    });
    await assert.rejects(unreachable.send({ topic: NORMAL, body: Buffer.from('x') }), (error: DmpError) => {
      assert.equal(error.code, MessagingErrorCode.NotReady);
      assert.equal(error.retryable, true);
      return true;
    });
  });

  it('rejects a message RocketMQ can never take as not retryable', async () => {
    // FIFO message (with a group) to a NORMAL topic: the topic's message type refuses it.
    await assert.rejects(
      producer.send({ topic: NORMAL, body: Buffer.from('x'), messageGroup: 'g' }),
      (error: DmpError) => {
        assert.equal(error.code, MessagingErrorCode.SendRejected);
        assert.equal(error.retryable, false);
        return true;
      },
    );
  });
});
