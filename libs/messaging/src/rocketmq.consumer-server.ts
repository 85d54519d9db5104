import {
  DeadLetterProperty,
  deadLetterPropertyValue,
  DmpError,
  errorMessage,
  isForConsumerGroup,
} from '@dmp/contracts';
import { backoffDelay } from '@dmp/flow';
import { AGE_BUCKETS, extractTraceContext, recordFailure, type MetricsRegistry } from '@dmp/observability';
import { Logger, type LoggerService } from '@nestjs/common';
import { Server, type CustomTransportStrategy, type MessageHandler } from '@nestjs/microservices';
import { context, ROOT_CONTEXT, SpanKind, trace } from '@opentelemetry/api';
import type { MessageView, SimpleConsumer } from 'rocketmq-client-nodejs';
import { MultiTopicSimpleConsumer } from './rocketmq.clients';
import { isObservable, lastValueFrom } from 'rxjs';
import {
  ROCKETMQ_TRANSPORT,
  RocketMqContext,
  toRocketMqMessage,
  type RocketMqMessage,
} from './rocketmq.context';
import { asDmpError, MessagingErrorCode } from './rocketmq.errors';
import { rocketMqClientLogger } from './rocketmq.logger';
import type { RocketMqProducer } from './rocketmq.producer';
import { ATTR, processAttributes, ROCKETMQ_SYSTEM, serverAttributes, TRACER_NAME } from './rocketmq.semconv';
import { ClientMetrics, Sleeper, withTimeout } from './rocketmq.util';

export interface RocketMqConsumerServerOptions {
  endpoints: string;
  namespace: string;
  /** Consumer group; must exist, and be orderly (`-o true`) for FIFO topics. */
  group: string;
  /** Topics to consume; each needs an `@EventPattern(topic)` handler. */
  topics: string[];
  /** Messages per receive call, at most 32 (the proxy's cap; default 32). */
  receiveBatch?: number;
  /** How long a received message stays invisible to other consumers (default 30 s, minimum 10 s). Renewed while the handler runs. */
  invisibleMs?: number;
  /** Concurrent receive loops per topic (default 2). */
  pollers?: number;
  /**
   * Handle a message group's messages one after the other (default true). false where the handler does
   * not depend on their order — e.g. rows keyed and versioned by their own content — so that a FIFO
   * receive of many messages of one group is handled at once instead of one round trip each.
   */
  groupOrder?: boolean;
  /** Stop receiving while this many messages are unsettled (default 5000). */
  maxInFlight?: number;
  /** Long-polling wait of one receive call (default 5 s; the proxy accepts 5–20 s). */
  awaitMs?: number;
  /** NORMAL topic for messages that cannot be processed (e.g. `dmp_dead_letter`); needs `producer`. */
  deadLetterTopic?: string;
  producer?: RocketMqProducer;
  logger?: LoggerService;
  metrics?: MetricsRegistry;
  /**
   * After this many deliveries a retryable failure is dead-lettered too (default 16). Without
   * `deadLetterTopic` there is no limit: failures are redelivered until they succeed.
   */
  maxDeliveryAttempts?: number;
  /** Redelivery delay after the first failure, doubled per attempt (default 1 s)… */
  retryDelayMs?: number;
  /** …up to this (default 60 s). */
  maxRetryDelayMs?: number;
  startupTimeoutMs?: number;
  /** How long `close()` waits for in-flight handlers (default 30 s). */
  drainTimeoutMs?: number;
  requestTimeoutMs?: number;
}

type Outcome = 'ack' | 'retry' | 'dead_letter' | 'skipped';

/** What becomes of a message its handler failed on. */
export type FailureSettlement =
  | { action: 'dead_letter'; reason: 'non_retryable' | 'max_delivery_attempts' }
  | { action: 'redeliver'; delayMs: number };

/**
 * Decides a failed delivery. With a dead-letter topic, a non-retryable failure, or any failure at the
 * `maxDeliveryAttempts`-th delivery, is dead-lettered. Without one the message is never acknowledged:
 * it is redelivered after the backoff for as long as it fails — the consumer waits for what it needs
 * (ClickHouse) rather than drop what it was given; past the group's retry_max_times the broker moves
 * it to its own `%DLQ%<group>` topic, where it is kept too.
 */
export function decideFailure(facts: {
  retryable: boolean;
  attempt: number;
  maxDeliveryAttempts: number;
  hasDeadLetterTopic: boolean;
  delayMs: (attempt: number) => number;
}): FailureSettlement {
  if (facts.hasDeadLetterTopic) {
    if (!facts.retryable) return { action: 'dead_letter', reason: 'non_retryable' };
    if (facts.attempt >= facts.maxDeliveryAttempts)
      return { action: 'dead_letter', reason: 'max_delivery_attempts' };
  }
  return { action: 'redeliver', delayMs: facts.delayMs(facts.attempt) };
}

/**
 * The properties of a consumer's dead letter: the original ones, and the error and origin under the
 * names of @dmp/contracts `DeadLetterProperty`. Error texts are made values RocketMQ accepts
 * (`deadLetterPropertyValue`): ClickHouse's run over several lines, and the proxy refuses a property
 * with a control character — a dead letter that cannot be sent would be retried forever instead.
 */
export function consumerDeadLetterProperties(
  message: RocketMqMessage,
  group: string,
  error: { code: string; text: string; reason: string },
): Record<string, string> {
  // The proxy hands system properties (`__SHARDINGKEY` = message group…) back as user properties;
  // copied, they make the proxy see a FIFO message and reject it for the NORMAL dead-letter topic.
  // The trace context is the dead letter's own (its send span is a child of this process span).
  const original = Object.fromEntries(
    Object.entries(message.properties).filter(
      ([key]) => !key.startsWith('__') && key !== 'traceparent' && key !== 'tracestate',
    ),
  );
  return {
    ...original,
    [DeadLetterProperty.errorCode]: deadLetterPropertyValue(error.code),
    [DeadLetterProperty.errorMessage]: deadLetterPropertyValue(error.text),
    [DeadLetterProperty.reason]: error.reason,
    [DeadLetterProperty.sourceTopic]: message.topic,
    [DeadLetterProperty.sourceMessageId]: message.messageId,
    [DeadLetterProperty.consumerGroup]: group,
    [DeadLetterProperty.deliveryAttempt]: String(message.deliveryAttempt),
    ...(message.messageGroup ? { [DeadLetterProperty.sourceMessageGroup]: message.messageGroup } : {}),
  };
}

/** One received, not yet settled message. RPCs on its receipt handle run one at a time (`op`). */
interface Delivery {
  view: MessageView;
  message: RocketMqMessage;
  op: Promise<void>;
  renewal?: NodeJS.Timeout;
  settled: boolean;
}

/** In-flight messages of one message group, processed strictly one after the other. */
interface GroupChain {
  tail: Promise<void>;
  pending: number;
  /** Set when a message of the group is to be redelivered: the ones after it must wait for it. */
  blockedDelayMs?: number;
}

const tracer = trace.getTracer(TRACER_NAME);
const MAX_RECEIVE_BATCH = 32;
/** Messages whose failures are remembered locally (see `failures`). */
const MAX_REMEMBERED_FAILURES = 10_000;

/**
 * Nest custom transport consuming RocketMQ 5 through the proxy (SimpleConsumer): handlers are
 * `@EventPattern(topic)` methods called with `(RocketMqMessage, RocketMqContext)`, each in a CONSUMER
 * span whose parent is the producer's context from the message properties.
 *
 * Settlement (`decideFailure`): handler resolves → ack; DmpError with retryable=false, or any error at
 * the `maxDeliveryAttempts`-th delivery → published to `deadLetterTopic` with the error, then ack;
 * other errors, and every error of a consumer without a dead-letter topic → redelivered after an
 * exponential backoff (changeInvisibleDuration). A failure is never acknowledged without a dead letter.
 * A message `dmp dead-letters replay` put back for another consumer group (`dmp_replay_for_group`) is
 * acknowledged unhandled (`skipped`).
 *
 * Order: messages of one message group are handled one after the other, in delivery order, even
 * when a receive batch holds several of them; when one is to be redelivered, the later ones of its
 * group that are already here are released unprocessed, so the group keeps its order. Different
 * groups (and messages without group, and every message with `groupOrder: false`) run concurrently,
 * up to `maxInFlight`.
 */
export class RocketMqConsumerServer
  extends Server<Record<string, never>, 'connected' | 'disconnected'>
  implements CustomTransportStrategy
{
  override transportId = ROCKETMQ_TRANSPORT;
  /** Handler errors are settled here, not just logged by Nest. */
  override readonly propagatesEventHandlerErrors = true;
  protected override readonly logger: LoggerService;

  private consumer?: MultiTopicSimpleConsumer;
  private running = false;
  private loops: Promise<void>[] = [];
  private readonly sleeper = new Sleeper();
  private readonly deliveries = new Set<Delivery>();
  private readonly settling = new Set<Promise<void>>();
  private readonly groups = new Map<string, GroupChain>();
  private capacityWaiters: (() => void)[] = [];
  private reserved = 0;
  private warnedGenericError = false;
  private closing?: Promise<void>;
  /**
   * Failed deliveries per message id, in this process. For FIFO topics the broker's delivery
   * attempt restarts at 1 when a redelivered batch holds more messages than the first one did, so
   * it alone could retry a failing message forever; the larger of both counts is used.
   */
  private readonly failures = new Map<string, number>();

  private readonly receiveBatch: number;
  private readonly invisibleMs: number;
  private readonly maxInFlight: number;
  private readonly awaitMs: number;
  private readonly requestTimeoutMs: number;
  private readonly maxDeliveryAttempts: number;

  private readonly received;
  private readonly settled;
  private readonly processSeconds;
  private readonly inFlightGauge;
  private readonly deliveryDelay;
  private readonly receiveErrors;
  private readonly settleErrors;
  private readonly renewals;

  constructor(private readonly options: RocketMqConsumerServerOptions) {
    super();
    this.logger = options.logger ?? new Logger(`RocketMqConsumer(${options.group})`);
    this.receiveBatch = Math.min(MAX_RECEIVE_BATCH, Math.max(1, options.receiveBatch ?? MAX_RECEIVE_BATCH));
    this.invisibleMs = Math.max(10_000, options.invisibleMs ?? 30_000);
    this.maxInFlight = Math.max(1, options.maxInFlight ?? 5_000);
    this.awaitMs = Math.max(5_000, options.awaitMs ?? 5_000);
    this.requestTimeoutMs = options.requestTimeoutMs ?? 3_000;
    this.maxDeliveryAttempts = Math.max(1, options.maxDeliveryAttempts ?? 16);
    if (options.deadLetterTopic && !options.producer)
      throw new Error(`RocketMQ consumer ${options.group}: deadLetterTopic needs a producer`);

    const metrics = new ClientMetrics(options.metrics);
    this.received = metrics.counter('dmp_rocketmq_received_total', 'Messages received from RocketMQ', [
      'topic',
    ]);
    this.settled = metrics.counter(
      'dmp_rocketmq_settled_total',
      'Received messages settled, by outcome (ack | retry | dead_letter | skipped)',
      ['topic', 'outcome'],
    );
    this.processSeconds = metrics.histogram(
      'dmp_rocketmq_process_seconds',
      'Time a handler took for one message',
      ['topic'],
    );
    this.inFlightGauge = metrics.gauge('dmp_rocketmq_in_flight', 'Received messages not settled yet', [
      'group',
    ]);
    this.deliveryDelay = metrics.histogram(
      'dmp_rocketmq_delivery_delay_seconds',
      'Age of a message when received (now - born timestamp): the backlog age',
      ['topic'],
      AGE_BUCKETS,
    );
    this.receiveErrors = metrics.counter('dmp_rocketmq_receive_errors_total', 'Failed receive calls', [
      'group',
    ]);
    this.settleErrors = metrics.counter(
      'dmp_rocketmq_settle_errors_total',
      'Failed ack / changeInvisibleDuration calls',
      ['topic', 'operation'],
    );
    this.renewals = metrics.counter(
      'dmp_rocketmq_invisible_renewals_total',
      'Invisibility extensions of messages still being handled',
      ['topic'],
    );
    this.inFlightGauge.set({ group: options.group }, 0);
  }

  /** Called by Nest (`startAllMicroservices`) once the handlers are registered. */
  listen(callback: (...optionalParams: unknown[]) => unknown): void {
    this.start().then(
      () => callback(),
      (error: unknown) => callback(error),
    );
  }

  isReady(): boolean {
    return this.running && !!this.consumer?.isRunning();
  }

  /** Messages received and not settled yet. */
  get inFlight(): number {
    return this.deliveries.size;
  }

  /** Stops receiving, lets in-flight handlers settle (bounded by `drainTimeoutMs`), then disconnects. */
  close(): Promise<void> {
    this.closing ??= this.shutdown().finally(() => (this.closing = undefined));
    return this.closing;
  }

  on(): never {
    throw new Error('RocketMqConsumerServer has no events');
  }

  unwrap<T>(): T {
    if (!this.consumer) throw new Error('RocketMqConsumerServer is not listening');
    return this.consumer as T;
  }

  private async shutdown(): Promise<void> {
    const consumer = this.consumer;
    if (!consumer) return;
    this.running = false;
    this.sleeper.wake();
    this.wakeCapacityWaiters();
    // Receive calls in progress return within awaitMs; what they bring is still processed.
    await withTimeout(Promise.allSettled(this.loops), this.awaitMs + this.requestTimeoutMs + 2_000, () =>
      Error('receive loops did not stop'),
    ).catch(this.logFailure);
    const drainMs = this.options.drainTimeoutMs ?? 30_000;
    await withTimeout(this.drain(), drainMs, () =>
      Error(`${this.inFlight} messages still unsettled after ${drainMs} ms; RocketMQ will redeliver them`),
    ).catch(this.logFailure);
    for (const delivery of this.deliveries) clearTimeout(delivery.renewal);
    await withTimeout(consumer.shutdown(), 5_000, () => Error('consumer shutdown timed out')).catch(
      this.logFailure,
    );
    this.consumer = undefined;
    this._status$.next('disconnected');
    this.logger.log(`RocketMQ consumer ${this.options.group} stopped`);
  }

  private async start(): Promise<void> {
    const { group, topics, endpoints } = this.options;
    const missing = topics.filter((topic) => !this.getHandlerByPattern(topic));
    if (missing.length)
      throw new Error(`no @EventPattern handler for RocketMQ topic(s) ${missing.join(', ')}`);

    const consumer = new MultiTopicSimpleConsumer({
      endpoints,
      namespace: this.options.namespace,
      consumerGroup: group,
      subscriptions: new Map(topics.map((topic) => [topic, '*'])),
      awaitDuration: this.awaitMs,
      requestTimeout: this.requestTimeoutMs,
      logger: rocketMqClientLogger(this.logger),
    });
    const timeoutMs = this.options.startupTimeoutMs ?? 30_000;
    try {
      await withTimeout(consumer.startup(), timeoutMs, () => Error(`no answer within ${timeoutMs} ms`));
    } catch (error) {
      await consumer.shutdown().catch(() => undefined);
      throw new DmpError(
        MessagingErrorCode.Unavailable,
        `RocketMQ consumer ${group} (proxy ${endpoints}, topics ${topics.join(', ')}) could not start: ${errorMessage(error)}`,
        true,
        { cause: error },
      );
    }
    this.consumer = consumer;
    this.running = true;
    // Receive loops per topic: one SimpleConsumer.receive() loop would long-poll idle topics in turn.
    const pollers = Math.max(1, this.options.pollers ?? 2);
    this.loops = topics.flatMap((topic) => Array.from({ length: pollers }, () => this.poll(consumer, topic)));
    this._status$.next('connected');
    this.logger.log(`RocketMQ consumer ${group} receiving from ${topics.join(', ')}`);
  }

  private async poll(consumer: MultiTopicSimpleConsumer, topic: string): Promise<void> {
    let receiveFailures = 0;
    while (this.running) {
      await this.waitForCapacity();
      if (!this.running) break;
      const count = Math.min(this.receiveBatch, this.maxInFlight - this.inFlight - this.reserved);
      this.reserved += count;
      let views: MessageView[];
      const receiveStartedAt = Date.now();
      try {
        views = await consumer.receiveFrom(topic, count, this.invisibleMs);
        receiveFailures = 0;
      } catch (error) {
        receiveFailures += 1;
        this.receiveErrors.inc({ group: this.options.group });
        const backoff = backoffDelay(receiveFailures, { baseMs: 500, maxMs: 30_000 });
        this.logger.warn(`receive from ${topic} failed (${errorMessage(error)}), next try in ${backoff} ms`);
        this.reserved -= count;
        await this.sleeper.sleep(backoff);
        continue;
      }
      this.reserved -= count;
      for (const view of views) this.dispatch(view, receiveStartedAt);
    }
  }

  private async waitForCapacity(): Promise<void> {
    while (this.running && this.inFlight + this.reserved >= this.maxInFlight)
      await new Promise<void>((resolve) => this.capacityWaiters.push(resolve));
  }

  private wakeCapacityWaiters(): void {
    const waiters = this.capacityWaiters;
    this.capacityWaiters = [];
    for (const wake of waiters) wake();
  }

  private dispatch(view: MessageView, receiveStartedAt: number): void {
    const message = toRocketMqMessage(
      view,
      Math.max(view.deliveryAttempt || 1, (this.failures.get(view.messageId) ?? 0) + 1),
    );
    this.traceReceive(message, receiveStartedAt);
    const delivery: Delivery = { view, message, op: Promise.resolve(), settled: false };
    this.deliveries.add(delivery);
    this.inFlightGauge.inc({ group: this.options.group });
    this.received.inc({ topic: view.topic });
    if (message.bornTimestamp)
      this.deliveryDelay.observe(
        { topic: view.topic },
        Math.max(0, Date.now() - message.bornTimestamp.getTime()) / 1000,
      );
    this.armRenewal(delivery);

    let done: Promise<void>;
    if (message.messageGroup && this.options.groupOrder !== false) {
      // One chain per message group: part of the per-device order invariant (docs/engineering.md).
      const key = `${view.topic}\u0000${message.messageGroup}`;
      const chain = this.groups.get(key) ?? { tail: Promise.resolve(), pending: 0 };
      this.groups.set(key, chain);
      chain.pending += 1;
      done = chain.tail.then(() => this.process(delivery, chain)).catch(this.logFailure);
      chain.tail = done;
      void done.then(() => {
        chain.pending -= 1;
        if (chain.pending === 0 && this.groups.get(key) === chain) this.groups.delete(key);
      });
    } else {
      done = this.process(delivery).catch(this.logFailure);
    }
    this.settling.add(done);
    void done.then(() => {
      this.settling.delete(done);
      this.deliveries.delete(delivery);
      this.inFlightGauge.dec({ group: this.options.group });
      this.wakeCapacityWaiters();
    });
  }

  /** A CLIENT span for the receive call that fetched the message, in the message's own trace. */
  private traceReceive(message: RocketMqMessage, startedAt: number): void {
    const parent = extractTraceContext(
      { traceparent: message.properties.traceparent, tracestate: message.properties.tracestate },
      ROOT_CONTEXT,
    );
    tracer
      .startSpan(
        `receive ${message.topic}`,
        {
          kind: SpanKind.CLIENT,
          startTime: startedAt,
          attributes: {
            [ATTR.system]: ROCKETMQ_SYSTEM,
            [ATTR.destination]: message.topic,
            [ATTR.consumerGroup]: this.options.group,
            [ATTR.namespace]: this.options.namespace,
            [ATTR.operationType]: 'receive',
            [ATTR.operationName]: 'receive',
            [ATTR.messageId]: message.messageId,
          },
        },
        parent,
      )
      .end();
  }

  /** Every path ends in a settlement, or in redelivery once the message's invisibility ends. */
  private async process(delivery: Delivery, chain?: GroupChain): Promise<void> {
    const { message } = delivery;
    if (chain?.blockedDelayMs !== undefined) {
      // An earlier message of this group will be redelivered: this one must come after it.
      await this.redeliver(delivery, chain.blockedDelayMs);
      this.settled.inc({ topic: message.topic, outcome: 'retry' });
      return;
    }
    if (!isForConsumerGroup(message.properties, this.options.group)) {
      // A replay for another group of this topic: this group handled the original already.
      const acked = await this.ack(delivery);
      this.settled.inc({ topic: message.topic, outcome: acked ? 'skipped' : 'retry' });
      return;
    }
    const parent = extractTraceContext(
      { traceparent: message.properties.traceparent, tracestate: message.properties.tracestate },
      ROOT_CONTEXT,
    );
    const span = tracer.startSpan(
      `process ${message.topic}`,
      {
        kind: SpanKind.CONSUMER,
        attributes: {
          ...processAttributes(message, this.options.group),
          [ATTR.namespace]: this.options.namespace,
          [ATTR.bodySize]: message.body.length,
          [ATTR.deliveryAttempt]: message.deliveryAttempt,
          ...(message.tag ? { [ATTR.messageTag]: message.tag } : {}),
          ...(message.keys.length ? { [ATTR.messageKeys]: message.keys } : {}),
          ...serverAttributes(this.options.endpoints),
        },
      },
      parent,
    );
    await context.with(trace.setSpan(parent, span), async () => {
      let outcome: Outcome;
      const stopTimer = this.processSeconds.startTimer({ topic: message.topic });
      try {
        if (delivery.view.corrupted)
          throw new DmpError(MessagingErrorCode.Corrupted, 'message body failed its checksum', false);
        await this.invoke(message);
        stopTimer();
        outcome = (await this.ack(delivery)) ? 'ack' : 'retry';
      } catch (error) {
        stopTimer();
        recordFailure(span, error);
        outcome = await this.settleFailure(delivery, error, chain);
      }
      if (outcome === 'retry') this.rememberFailure(message.messageId);
      else this.failures.delete(message.messageId);
      if (outcome === 'retry' && chain && chain.blockedDelayMs === undefined)
        chain.blockedDelayMs = this.retryDelay(1);
      span.setAttribute(ATTR.outcome, outcome);
      this.settled.inc({ topic: message.topic, outcome });
      span.end();
    });
  }

  private async invoke(message: RocketMqMessage): Promise<void> {
    const handler = this.getHandlerByPattern(message.topic) as MessageHandler;
    const result: unknown = await handler(message, new RocketMqContext([message, this.options.group]));
    if (isObservable(result)) await lastValueFrom(result, { defaultValue: undefined });
  }

  private async settleFailure(delivery: Delivery, error: unknown, chain?: GroupChain): Promise<Outcome> {
    const { message } = delivery;
    const dmp = asDmpError(error);
    if (!dmp && !(error instanceof Error) && !this.warnedGenericError) {
      this.warnedGenericError = true;
      this.logger.warn(
        `a ${message.topic} handler failed with Nest's generic RPC error; add @UseFilters(RocketMqExceptionFilter) to its controller so DmpError codes decide retry vs dead-letter`,
      );
    }
    const code = dmp?.code ?? MessagingErrorCode.HandlerFailed;
    const text = dmp?.message ?? errorMessage(error);
    const { deadLetterTopic, producer } = this.options;
    const decision = decideFailure({
      retryable: dmp ? dmp.retryable : true,
      attempt: message.deliveryAttempt,
      maxDeliveryAttempts: this.maxDeliveryAttempts,
      hasDeadLetterTopic: !!deadLetterTopic && !!producer,
      delayMs: (attempt) => this.retryDelay(attempt),
    });
    const where = `${message.topic} message ${message.messageId} (attempt ${message.deliveryAttempt})`;

    if (decision.action === 'dead_letter' && deadLetterTopic && producer) {
      const { reason } = decision;
      try {
        await producer.send({
          topic: deadLetterTopic,
          body: message.body,
          keys: [...message.keys, message.messageId],
          ...(message.tag ? { tag: message.tag } : {}),
          properties: consumerDeadLetterProperties(message, this.options.group, { code, text, reason }),
        });
      } catch (sendError) {
        this.logger.error(
          `${where} could not be dead-lettered (${errorMessage(sendError)}); redelivering it`,
        );
        await this.redeliver(delivery, this.retryDelay(message.deliveryAttempt));
        return 'retry';
      }
      this.logger.error(`${where} dead-lettered to ${deadLetterTopic} (${reason}): ${code} ${text}`);
      return (await this.ack(delivery)) ? 'dead_letter' : 'retry';
    }

    const delayMs = decision.action === 'redeliver' ? decision.delayMs : this.retryDelay(1);
    if (chain) chain.blockedDelayMs = delayMs;
    this.logger.warn(`${where} failed, redelivery in ${delayMs} ms: ${code} ${text}`);
    await this.redeliver(delivery, delayMs);
    return 'retry';
  }

  private rememberFailure(messageId: string): void {
    this.failures.set(messageId, (this.failures.get(messageId) ?? 0) + 1);
    if (this.failures.size > MAX_REMEMBERED_FAILURES)
      this.failures.delete(this.failures.keys().next().value!);
  }

  private retryDelay(attempt: number): number {
    return backoffDelay(attempt, {
      baseMs: this.options.retryDelayMs ?? 1_000,
      maxMs: this.options.maxRetryDelayMs ?? 60_000,
    });
  }

  /** Returns false when the ack failed (the message will come again). */
  private async ack(delivery: Delivery): Promise<boolean> {
    return this.settle(delivery, 'ack', (consumer, view) => consumer.ack(view));
  }

  private async redeliver(delivery: Delivery, delayMs: number): Promise<boolean> {
    return this.settle(delivery, 'change_invisible_duration', (consumer, view) =>
      consumer.changeInvisibleDuration(view, delayMs),
    );
  }

  private async settle(
    delivery: Delivery,
    operation: string,
    call: (consumer: SimpleConsumer, view: MessageView) => Promise<void>,
  ): Promise<boolean> {
    delivery.settled = true;
    clearTimeout(delivery.renewal);
    await delivery.op;
    const consumer = this.consumer;
    try {
      if (!consumer) throw new Error('consumer closed');
      await call(consumer, delivery.view);
      return true;
    } catch (error) {
      this.settleErrors.inc({ topic: delivery.view.topic, operation });
      this.logger.warn(
        `${operation} of ${delivery.view.topic} message ${delivery.view.messageId} failed (${errorMessage(error)}); it will be redelivered`,
      );
      return false;
    }
  }

  /** Keeps a message invisible while its handler (or its group's earlier messages) still run. */
  private armRenewal(delivery: Delivery): void {
    const every = Math.floor((this.invisibleMs * 2) / 3);
    delivery.renewal = setTimeout(() => {
      if (delivery.settled) return;
      delivery.op = delivery.op.then(async () => {
        const consumer = this.consumer;
        if (delivery.settled || !consumer) return;
        try {
          await consumer.changeInvisibleDuration(delivery.view, this.invisibleMs);
          this.renewals.inc({ topic: delivery.view.topic });
        } catch (error) {
          this.settleErrors.inc({ topic: delivery.view.topic, operation: 'renew' });
          this.logger.warn(
            `could not extend invisibility of ${delivery.view.messageId}: ${errorMessage(error)}`,
          );
        }
      });
      this.armRenewal(delivery);
    }, every);
    delivery.renewal.unref();
  }

  private readonly logFailure = (error: unknown): void => {
    this.logger.warn(errorMessage(error));
  };

  private async drain(): Promise<void> {
    while (this.settling.size > 0) await Promise.allSettled([...this.settling]);
  }
}

/** For a health check: `{ up, detail }` of a producer or consumer server. */
export function rocketMqHealth(client: { isReady(): boolean }, endpoints: string) {
  return { up: client.isReady(), detail: { endpoints } };
}
