import { OutboxErrorCode } from '@dmp/contracts';
import { MetricsRegistry, recordFailure } from '@dmp/observability';
import type { PlannedWebhook } from '@dmp/rules';
import { Inject, Injectable, Logger } from '@nestjs/common';
import { context, SpanKind, trace } from '@opentelemetry/api';
import type { Counter, Gauge } from 'prom-client';
import { Agent, request, RetryAgent } from 'undici';
import { KERNEL_CONFIG, type KernelConfig } from '../config';
import { EgressPolicy } from '../egress/egress-policy';
import { egressConnector } from './egress-connector';

/**
 * How a delivery ended. `misconfigured`: a `${secret:NAME}` it refers to is not configured;
 * `refused`: its address is not public and not allowed (egress-policy.ts).
 */
export type WebhookResult = 'ok' | 'failed' | 'rejected' | 'dropped' | 'misconfigured' | 'refused';

interface Job {
  webhook: PlannedWebhook;
  done?: (result: WebhookResult) => void;
}

const SECRET = /\$\{secret:([A-Za-z0-9_.-]+)\}/g;
const tracer = trace.getTracer('dmp-kernel');

/**
 * Webhooks of rules: HTTP POST of a JSON payload, off the evaluation path.
 *
 * - A bounded queue (KERNEL_WEBHOOK_QUEUE_MAX) drained by KERNEL_WEBHOOK_CONCURRENCY workers; when full,
 *   new deliveries are dropped and counted — a slow receiver never stalls telemetry.
 * - Each request has a timeout; connection errors, timeouts, 429 and 5xx are retried with exponential
 *   backoff (honouring Retry-After) by undici's RetryAgent — undici is Node's own HTTP client. Other 4xx
 *   answers are final (`rejected`).
 * - `X-DMP-Delivery` carries the delivery id (stable per cause): receivers can deduplicate.
 * - URLs and headers may refer to secrets (`${secret:NAME}`, from KERNEL_WEBHOOK_SECRETS), so rule files
 *   under version control hold no credentials.
 * - Egress policy: only public addresses, or those in KERNEL_WEBHOOK_ALLOW_NETWORKS, are connected to
 *   (checked on the resolved address itself); redirects are not followed (a 3xx is `rejected`).
 */
@Injectable()
export class WebhookDispatcher {
  private readonly log = new Logger('Webhooks');
  private readonly queue: Job[] = [];
  private active = 0;
  private idleWaiters: (() => void)[] = [];
  private readonly agent: Agent;
  private readonly dispatcher: RetryAgent;
  private readonly results: Counter<'result'>;
  private readonly queued: Gauge;

  constructor(
    @Inject(KERNEL_CONFIG) private readonly config: KernelConfig,
    metrics: MetricsRegistry,
  ) {
    const { webhook } = config.rules;
    this.agent = new Agent({
      headersTimeout: webhook.timeoutMs,
      bodyTimeout: webhook.timeoutMs,
      connect: egressConnector(EgressPolicy.allowing(config.rules.webhook.allowNetworks), {
        timeout: webhook.timeoutMs,
      }),
    });
    this.dispatcher = new RetryAgent(this.agent, {
      maxRetries: webhook.maxRetries,
      minTimeout: webhook.retryBaseMs,
      maxTimeout: webhook.retryMaxMs,
      timeoutFactor: 2,
      retryAfter: true,
      methods: ['POST'],
      statusCodes: [429, 500, 502, 503, 504],
      errorCodes: [
        'ECONNRESET',
        'ECONNREFUSED',
        'ENOTFOUND',
        'ENETDOWN',
        'ENETUNREACH',
        'EHOSTDOWN',
        'EHOSTUNREACH',
        'EPIPE',
        'ETIMEDOUT',
        'UND_ERR_SOCKET',
        'UND_ERR_CONNECT_TIMEOUT',
        'UND_ERR_HEADERS_TIMEOUT',
        'UND_ERR_BODY_TIMEOUT',
      ],
    });
    this.results = metrics.counter(
      'dmp_kernel_webhook_total',
      'Webhook deliveries, by result (ok | failed | rejected | dropped | misconfigured | refused)',
      ['result'],
    );
    this.queued = metrics.gauge('dmp_kernel_webhook_queued', 'Webhook deliveries waiting or in progress');
    this.queued.set(0);
  }

  /** Longest a delivery can take with all its retries: outbox leases of webhooks must outlast it. */
  get maxDeliveryMs(): number {
    const { timeoutMs, maxRetries, retryMaxMs } = this.config.rules.webhook;
    // Before each retry undici's RetryAgent waits its backoff, or what a Retry-After answer asks — capped
    // at maxTimeout either way: the worst case is the cap before every retry.
    return timeoutMs + maxRetries * (timeoutMs + retryMaxMs);
  }

  /** Queues a delivery; `done` is told how it ended (also when it was dropped). Never throws. */
  enqueue(webhook: PlannedWebhook, done?: (result: WebhookResult) => void): void {
    if (this.queue.length >= this.config.rules.webhook.queueMax) {
      this.finish({ webhook, ...(done ? { done } : {}) }, 'dropped');
      this.log.warn(`webhook queue full: delivery ${webhook.deliveryId} of rule ${webhook.ruleId} dropped`);
      return;
    }
    this.queue.push({ webhook, ...(done ? { done } : {}) });
    this.queued.set(this.queue.length + this.active);
    this.pump();
  }

  /** Shutdown (EvaluationLifecycle): lets queued and running deliveries finish (bounded), then closes. */
  async drain(): Promise<void> {
    if (this.queue.length + this.active > 0) {
      const idle = new Promise<void>((resolve) => this.idleWaiters.push(resolve));
      await Promise.race([idle, new Promise((resolve) => setTimeout(resolve, 10_000).unref())]);
    }
    await this.dispatcher.close().catch(() => undefined);
  }

  private pump(): void {
    while (this.active < this.config.rules.webhook.concurrency && this.queue.length > 0) {
      const job = this.queue.shift()!;
      this.active += 1;
      void this.deliver(job.webhook)
        .then((result) => this.finish(job, result))
        .finally(() => {
          this.active -= 1;
          this.queued.set(this.queue.length + this.active);
          if (this.queue.length + this.active === 0) for (const wake of this.idleWaiters.splice(0)) wake();
          this.pump();
        });
    }
  }

  private finish(job: Job, result: WebhookResult): void {
    this.results.inc({ result });
    try {
      job.done?.(result);
    } catch (error) {
      this.log.warn(`webhook completion hook failed: ${(error as Error).message}`);
    }
  }

  private async deliver(webhook: PlannedWebhook): Promise<WebhookResult> {
    const secrets = this.config.rules.webhook.secrets;
    const missing = new Set<string>();
    const resolve = (text: string) =>
      text.replace(SECRET, (_, name: string) => {
        const value = secrets[name];
        if (value === undefined) missing.add(name);
        return value ?? '';
      });
    const url = resolve(webhook.url);
    const headers = Object.fromEntries(
      Object.entries(webhook.headers).map(([k, v]) => [k.toLowerCase(), resolve(v)]),
    );
    if (missing.size) {
      this.log.error(
        `webhook of rule ${webhook.ruleId} refers to unknown secret(s) ${[...missing].join(', ')} (KERNEL_WEBHOOK_SECRETS)`,
      );
      return 'misconfigured';
    }
    let target: URL;
    try {
      target = new URL(url);
      if (target.protocol !== 'http:' && target.protocol !== 'https:') throw new Error('not http(s)');
    } catch {
      this.log.error(`webhook of rule ${webhook.ruleId}: not an http(s) URL after secret substitution`);
      return 'misconfigured';
    }
    const span = tracer.startSpan(
      'POST',
      {
        kind: SpanKind.CLIENT,
        attributes: {
          'http.request.method': 'POST',
          'server.address': target.hostname,
          'url.full': `${target.origin}${target.pathname}`,
          'dmp.rule.id': webhook.ruleId,
          'dmp.device.id': webhook.deviceId,
          'dmp.webhook.delivery_id': webhook.deliveryId,
        },
      },
      context.active(),
    );
    try {
      const response = await request(target, {
        method: 'POST',
        dispatcher: this.dispatcher,
        headers: {
          ...headers,
          'content-type': 'application/json',
          'user-agent': 'dmp-kernel',
          'x-dmp-delivery': webhook.deliveryId,
          'x-dmp-event': webhook.payload.event,
        },
        body: JSON.stringify(webhook.payload),
      });
      await response.body.dump();
      span.setAttribute('http.response.status_code', response.statusCode);
      if (response.statusCode >= 200 && response.statusCode < 300) return 'ok';
      this.log.warn(
        `webhook ${webhook.deliveryId} of rule ${webhook.ruleId} refused: HTTP ${response.statusCode}`,
      );
      span.setStatus({ code: 2, message: `HTTP ${response.statusCode}` });
      return 'rejected';
    } catch (error) {
      recordFailure(span, error);
      const refusal = refusalOf(error);
      if (refusal) {
        this.log.error(`webhook ${webhook.deliveryId} of rule ${webhook.ruleId} refused: ${refusal}`);
        return 'refused';
      }
      this.log.warn(
        `webhook ${webhook.deliveryId} of rule ${webhook.ruleId} failed after retries: ${(error as Error).message}`,
      );
      return 'failed';
    } finally {
      span.end();
    }
  }
}

/** The policy's refusal, possibly wrapped by undici (errors of a connection attempt may come as `cause`). */
function refusalOf(error: unknown): string | undefined {
  for (let e = error, depth = 0; e && depth < 5; e = (e as { cause?: unknown }).cause, depth++)
    if ((e as { code?: unknown }).code === OutboxErrorCode.WebhookEgressRefused) return (e as Error).message;
  return undefined;
}
