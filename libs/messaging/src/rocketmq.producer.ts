import { DmpError, errorMessage } from '@dmp/contracts';
import { injectTraceContext, recordFailure, type MetricsRegistry } from '@dmp/observability';
import { Logger, type LoggerService } from '@nestjs/common';
import { context, SpanKind, trace, type Link } from '@opentelemetry/api';
import type { Producer } from 'rocketmq-client-nodejs';
import { StartupSafeProducer } from './rocketmq.clients';
import { isPermanentSendError, MessagingErrorCode, toSendError } from './rocketmq.errors';
import { rocketMqClientLogger } from './rocketmq.logger';
import { ATTR, ROCKETMQ_SYSTEM, serverAttributes, TRACER_NAME } from './rocketmq.semconv';
import { ClientMetrics, Sleeper, withTimeout } from './rocketmq.util';

export interface RocketMqProducerOptions {
  /** Proxy gRPC endpoints, e.g. `127.0.0.1:8081` (`;`-separated for several). */
  endpoints: string;
  namespace: string;
  /** Every topic this producer sends to: routes are fetched (and checked) at start. */
  topics: string[];
  /** The app, for logs and error messages. */
  serviceName: string;
  logger?: LoggerService;
  metrics?: MetricsRegistry;
  /** Bound on `start()` (default 30 s). */
  startupTimeoutMs?: number;
  /** Per-request timeout of the client (default 3 s, minimum 1 s). */
  requestTimeoutMs?: number;
  /** Attempts the client makes per send, immediately (default 3). */
  maxAttempts?: number;
  /**
   * Pause before one more round of attempts after a transient failure (default 250 ms;
   * 0 disables): rides out a proxy restart or a blip that the client's immediate retries don't.
   */
  retryBackoffMs?: number;
}

export interface OutgoingMessage {
  topic: string;
  body: Buffer;
  /** Makes the message FIFO within its group (FIFO topics only). */
  messageGroup?: string;
  keys?: string[];
  tag?: string;
  /** User properties; `traceparent`/`tracestate` are set by `send`. */
  properties?: Record<string, string>;
  /**
   * Links of the send span, e.g. to each message a batch carries (the span's parent is the active
   * context). Not sent.
   */
  links?: Link[];
}

export interface SendResult {
  messageId: string;
}

const tracer = trace.getTracer(TRACER_NAME);

/**
 * Sends messages to RocketMQ 5 through the proxy's gRPC API, one `send` per message (the client
 * has no batch send: throughput comes from concurrent sends). Each send is a PRODUCER span whose
 * context travels in the message properties, so consumers continue the same trace.
 * A plain class: apps provide it with `useFactory`, `start()` it on bootstrap and `stop()` it last.
 */
export class RocketMqProducer {
  private readonly logger: LoggerService;
  private readonly client: StartupSafeProducer;
  private readonly sleeper = new Sleeper();
  private ready = false;
  private readonly sent;
  private readonly sendSeconds;

  constructor(private readonly options: RocketMqProducerOptions) {
    this.logger = options.logger ?? new Logger(`RocketMqProducer`);
    this.client = new StartupSafeProducer({
      endpoints: options.endpoints,
      namespace: options.namespace,
      topics: [...new Set(options.topics)],
      maxAttempts: options.maxAttempts ?? 3,
      requestTimeout: options.requestTimeoutMs ?? 3_000,
      logger: rocketMqClientLogger(this.logger),
    });
    const metrics = new ClientMetrics(options.metrics);
    this.sent = metrics.counter(
      'dmp_rocketmq_sent_total',
      'Messages sent to RocketMQ, by result (ok | error | rejected)',
      ['topic', 'result'],
    );
    this.sendSeconds = metrics.histogram(
      'dmp_rocketmq_send_seconds',
      'Time until RocketMQ acknowledged a send',
      ['topic'],
    );
  }

  /** Connects, fetches the topics' routes and waits for the proxy's settings. */
  async start(): Promise<void> {
    const timeoutMs = this.options.startupTimeoutMs ?? 30_000;
    const what = `RocketMQ producer of ${this.options.serviceName} (proxy ${this.options.endpoints}, topics ${this.options.topics.join(', ')})`;
    try {
      await withTimeout(
        this.client.startup(),
        timeoutMs,
        () => new Error(`no answer within ${timeoutMs} ms — is the proxy up and are the topics created?`),
      );
    } catch (error) {
      // A half-started client keeps timers and streams open: release them.
      await this.client.shutdown().catch(() => undefined);
      throw new DmpError(
        MessagingErrorCode.Unavailable,
        `${what} could not start: ${describe(error)}`,
        true,
        {
          cause: error,
        },
      );
    }
    this.ready = true;
    this.logger.log(`${what} started`);
  }

  isReady(): boolean {
    return this.ready && this.client.isRunning();
  }

  /** Stops sending; call after every in-flight `send` settled. */
  async stop(): Promise<void> {
    if (!this.ready) return;
    this.ready = false;
    this.sleeper.wake();
    const what = `RocketMQ producer of ${this.options.serviceName}`;
    await withTimeout(
      this.client.shutdown(),
      5_000,
      () => new Error('RocketMQ producer shutdown timed out'),
    ).catch((error: unknown) => {
      this.logger.warn(errorMessage(error));
    });
    this.logger.log(`${what} stopped`);
  }

  /**
   * Resolves once the broker stored the message. Throws DmpError `DMP_ERR_ROCKETMQ_SEND`
   * (retryable) when RocketMQ could not be reached, `DMP_ERR_ROCKETMQ_REJECTED` (not retryable)
   * when it refused the message itself, `DMP_ERR_ROCKETMQ_NOT_READY` before `start()`.
   */
  async send({ links, ...message }: OutgoingMessage): Promise<SendResult> {
    const { topic } = message;
    if (!this.ready)
      throw new DmpError(
        MessagingErrorCode.NotReady,
        `RocketMQ producer is not started, cannot send to ${topic}`,
        true,
      );

    const span = tracer.startSpan(
      `send ${topic}`,
      {
        kind: SpanKind.PRODUCER,
        attributes: {
          [ATTR.system]: ROCKETMQ_SYSTEM,
          [ATTR.destination]: topic,
          [ATTR.operationType]: 'send',
          [ATTR.operationName]: 'send',
          [ATTR.namespace]: this.options.namespace,
          [ATTR.bodySize]: message.body.length,
          [ATTR.messageType]: message.messageGroup ? 'fifo' : 'normal',
          ...(message.messageGroup ? { [ATTR.messageGroup]: message.messageGroup } : {}),
          ...(message.tag ? { [ATTR.messageTag]: message.tag } : {}),
          ...(message.keys?.length ? { [ATTR.messageKeys]: message.keys } : {}),
          ...serverAttributes(this.options.endpoints),
        },
        ...(links?.length ? { links } : {}),
      },
      context.active(),
    );
    const properties = new Map(Object.entries(message.properties ?? {}));
    const carrier = injectTraceContext(trace.setSpan(context.active(), span));
    if (carrier.traceparent) properties.set('traceparent', carrier.traceparent);
    if (carrier.tracestate) properties.set('tracestate', carrier.tracestate);

    const stopTimer = this.sendSeconds.startTimer({ topic });
    try {
      const receipt = await this.sendWithRetry({ ...message, properties });
      span.setAttribute(ATTR.messageId, receipt.messageId);
      this.sent.inc({ topic, result: 'ok' });
      return { messageId: receipt.messageId };
    } catch (error) {
      const failure = toSendError(topic, this.options.endpoints, error);
      this.sent.inc({ topic, result: failure.retryable ? 'error' : 'rejected' });
      recordFailure(span, failure);
      throw failure;
    } finally {
      stopTimer();
      span.end();
    }
  }

  private async sendWithRetry(message: Parameters<Producer['send']>[0]) {
    try {
      return await this.client.send(message);
    } catch (error) {
      const backoff = this.options.retryBackoffMs ?? 250;
      if (backoff <= 0 || isPermanentSendError(error) || !this.ready) throw error;
      this.logger.warn(`send to ${message.topic} failed (${errorMessage(error)}), retrying in ${backoff} ms`);
      await this.sleeper.sleep(backoff);
      if (!this.ready) throw error;
      return await this.client.send(message);
    }
  }
}

/** The client wraps start-up failures; the root cause (e.g. "topic not found") is the useful part. */
function describe(error: unknown): string {
  const parts: string[] = [];
  for (let e: unknown = error; e instanceof Error && parts.length < 4; e = e.cause) parts.push(e.message);
  return parts.length ? parts.join(' ← ') : String(error);
}
