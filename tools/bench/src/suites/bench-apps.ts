import {
  createRocketmqResources,
  metricSum,
  stack,
  type RocketmqResources,
  type RunningApp,
} from '@dmp/testing';
import { Redis } from 'ioredis';
import { randomBytes } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';

/**
 * How the bench's suites (chain, hops) run the apps: the settings they share, the isolation of a run on
 * the shared stack (Redis database and key namespace, MQTT share group and client ids), reading the
 * apps' metrics and cleaning up after a run.
 */

/** The bench's Redis database; a run's keys are removed afterwards (by its device prefix and kernel namespace). */
export const REDIS_DB = 13;
/** Production-like head sampling (the chain test traces everything; at these rates that is its own load). */
export const TRACE_SAMPLE_RATIO = '0.01';

export const benchRedisUrl = () => `${stack.redis.url.replace(/\/\d*$/, '')}/${REDIS_DB}`;

/** Settings every app of a run gets: its topics, its ClickHouse database, the bench's Redis and sampling. */
export function commonAppEnv(topics: Record<string, string>, database: string): Record<string, string> {
  return {
    ...topics,
    CLICKHOUSE_DATABASE: database,
    REDIS_URL: benchRedisUrl(),
    OTEL_TRACES_SAMPLE_RATIO: TRACE_SAMPLE_RATIO,
    LOG_LEVEL: 'warn',
  };
}

/** The apps' topic and group settings of a run (env names as the apps read them). */
// Type aliases, not interfaces: they are also passed as plain env records.
export type BenchTopics = {
  ROCKETMQ_TOPIC_EVENT: string;
  ROCKETMQ_TOPIC_SNAPSHOT: string;
  ROCKETMQ_TOPIC_ALARM: string;
  ROCKETMQ_TOPIC_DEAD_LETTER: string;
};
export type BenchGroups = {
  DATA_CONSUMER_GROUP: string;
  ALARM_CONSUMER_GROUP: string;
  DEAD_LETTER_CONSUMER_GROUP: string;
};

/**
 * Creates a run's RocketMQ topics and groups (idempotent): telemetry FIFO with 32 queues (more message
 * groups spread over more queues than DMP's 8-queue default), alarms FIFO, dead letters NORMAL.
 */
export async function createBenchResources(
  topics: readonly BenchTopics[],
  groups: readonly BenchGroups[],
): Promise<void> {
  const resources: Required<RocketmqResources> = { topics: {}, groups: {} };
  for (const t of topics) {
    resources.topics[t.ROCKETMQ_TOPIC_EVENT] = { type: 'FIFO', queues: 32 };
    resources.topics[t.ROCKETMQ_TOPIC_SNAPSHOT] = { type: 'FIFO', queues: 32 };
    resources.topics[t.ROCKETMQ_TOPIC_ALARM] = 'FIFO';
    resources.topics[t.ROCKETMQ_TOPIC_DEAD_LETTER] = 'NORMAL';
  }
  for (const g of groups) {
    resources.groups[g.DATA_CONSUMER_GROUP] = 'orderly';
    resources.groups[g.ALARM_CONSUMER_GROUP] = 'orderly';
    resources.groups[g.DEAD_LETTER_CONSUMER_GROUP] = 'concurrently';
  }
  await createRocketmqResources(resources);
}

/** dmp-kernel's settings in a run: rule evaluation off, its own Redis namespace and MQTT client id. */
export const kernelAppEnv = (run: string, grpcUrl: string): Record<string, string> => ({
  KERNEL_GRPC_URL: grpcUrl,
  KERNEL_RULES_ENABLED: 'false',
  KERNEL_RULES_WATCH: 'false',
  KERNEL_REDIS_NAMESPACE: `bench${run}`,
  KERNEL_MQTT_CLIENT_ID: `bench-${run}-kernel`,
});

/** dmp-mqtt's settings in a run: its own share group and client id, no session, no registry or rate limit. */
export const mqttAppEnv = (run: string, kernelGrpcUrl: string): Record<string, string> => ({
  KERNEL_GRPC_URL: kernelGrpcUrl,
  MQTT_SHARE_GROUP: `bench${run}`,
  MQTT_CLIENT_ID: `bench-${run}-mqtt`,
  MQTT_SESSION_EXPIRY_SECONDS: '0',
  ADMIN_TOKEN: `bench-${run}-${randomBytes(12).toString('hex')}`,
  MQTT_AUTH_HTTP_SECRET: randomBytes(24).toString('hex'),
  DEVICE_REGISTRY_REQUIRED: 'false',
  DEVICE_RATE_LIMIT_PER_SECOND: '0',
});

/** The Redis keys a run leaves: dedup keys of its devices (`b{run}s…`, `raw{run}`, `h{run}…`), the kernel's namespace. */
export const runRedisPatterns = (run: string) => [`*b${run}s*`, `*raw${run}*`, `*h${run}*`, `bench${run}:*`];

/** Each app's /metrics text, by app name. */
export async function scrape(apps: readonly RunningApp[]): Promise<Map<string, string>> {
  const texts = await Promise.all(apps.map(async (app) => (await fetch(`${app.baseUrl}/metrics`)).text()));
  return new Map(apps.map((app, i) => [app.name, texts[i]]));
}

/** One counter of one app (summed over label sets matching `labels`). */
export async function readCounter(
  app: RunningApp,
  metric: string,
  labels: Record<string, string> = {},
): Promise<number> {
  return metricSum(await (await fetch(`${app.baseUrl}/metrics`)).text(), metric, labels);
}

/** Runs `task` every `intervalMs` (never overlapping) until stopped. */
export function poll(intervalMs: number, task: () => Promise<void>): { stop(): Promise<void> } {
  let stopped = false;
  const loop = (async () => {
    while (!stopped) {
      const started = Date.now();
      await task().catch(() => undefined);
      await sleep(Math.max(0, intervalMs - (Date.now() - started)));
    }
  })();
  return {
    async stop() {
      stopped = true;
      await loop;
    },
  };
}

/** Deletes this run's keys (dedup keys, the kernel's namespace) from the bench's Redis database. */
export async function cleanRedis(url: string, patterns: string[]): Promise<void> {
  const redis = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 2 });
  await redis.connect();
  try {
    for (const match of patterns) {
      let cursor = '0';
      do {
        const [next, keys] = await redis.scan(cursor, 'MATCH', match, 'COUNT', 5_000);
        cursor = next;
        if (keys.length) await redis.unlink(...keys);
      } while (cursor !== '0');
    }
  } finally {
    redis.disconnect();
  }
}
