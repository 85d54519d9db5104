import { StartupSafeProducer, rocketMqClientLogger } from '@dmp/messaging';
import { Inject, Injectable, Logger, type OnApplicationShutdown } from '@nestjs/common';
import { MessageType } from 'rocketmq-client-nodejs/proto/apache/rocketmq/v2/definition_pb';
import { KERNEL_CONFIG, type KernelConfig } from '../config';

/**
 * What the kernel needs to know about the RocketMQ topics rules route to: that they exist (a rule set
 * routing to a missing topic is refused) and whether they are FIFO (then routed messages keep the
 * device as message group, in order; NORMAL topics get them without group). The route data comes from
 * the proxy through a producer client that never sends.
 */
@Injectable()
export class RouteTopics implements OnApplicationShutdown {
  private readonly log = new Logger('RouteTopics');
  private client?: RouteProbeClient;
  private started?: Promise<RouteProbeClient>;
  private readonly fifo = new Map<string, boolean>();

  constructor(@Inject(KERNEL_CONFIG) private readonly config: KernelConfig) {}

  /** Whether the topic accepts FIFO messages; throws when it does not exist (or RocketMQ is unreachable). */
  async isFifo(topic: string): Promise<boolean> {
    const known = this.fifo.get(topic);
    if (known !== undefined) return known;
    const client = await this.start();
    const route = await client.route(topic);
    if (route.messageQueues.length === 0) throw new Error(`topic ${topic} has no queues`);
    const fifo = route.messageQueues.some((queue) => queue.acceptMessageTypesList.includes(MessageType.FIFO));
    this.fifo.set(topic, fifo);
    return fifo;
  }

  /** The topics among these that do not exist (or cannot be reached), with the reason. */
  async missing(topics: Iterable<string>): Promise<Map<string, string>> {
    const missing = new Map<string, string>();
    for (const topic of new Set(topics)) {
      try {
        await this.isFifo(topic);
      } catch (error) {
        missing.set(topic, describe(error));
      }
    }
    return missing;
  }

  async onApplicationShutdown(): Promise<void> {
    const client = this.client;
    this.client = undefined;
    this.started = undefined;
    await client?.shutdown().catch(() => undefined);
  }

  private start(): Promise<RouteProbeClient> {
    this.started ??= (async () => {
      const client = new RouteProbeClient({
        endpoints: this.config.rocketmq.endpoints,
        namespace: this.config.rocketmq.namespace,
        topics: [this.config.rocketmq.topics.event],
        requestTimeout: 3_000,
        logger: rocketMqClientLogger(this.log),
      });
      let timer: NodeJS.Timeout | undefined;
      try {
        await Promise.race([
          client.startup(),
          new Promise<never>((_, reject) => {
            timer = setTimeout(() => reject(new Error('RocketMQ proxy did not answer within 30 s')), 30_000);
          }),
        ]);
      } catch (error) {
        this.started = undefined;
        await client.shutdown().catch(() => undefined);
        throw error;
      } finally {
        clearTimeout(timer);
      }
      this.client = client;
      return client;
    })();
    return this.started;
  }
}

class RouteProbeClient extends StartupSafeProducer {
  route(topic: string) {
    return this.getRouteData(topic);
  }
}

function describe(error: unknown): string {
  const parts: string[] = [];
  for (let e: unknown = error; e instanceof Error && parts.length < 3; e = e.cause) parts.push(e.message);
  return parts.length ? parts.join(' ← ') : String(error);
}
