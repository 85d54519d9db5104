import { z } from 'zod';
import { bool, int, list, num } from './env';
import { optionalSecret, refineUrlPassword } from './secrets';

/** Configuration sections shared by the apps; each app picks the ones it needs. */

export const httpSection = (defaultPort: number) =>
  z
    .object({ HTTP_HOST: z.string().default('127.0.0.1'), HTTP_PORT: int(defaultPort, 1, 65535) })
    .transform((e) => ({ host: e.HTTP_HOST, port: e.HTTP_PORT }));

export const telemetrySection = z
  .object({
    OTEL_ENABLED: bool(true),
    OTEL_EXPORTER_OTLP_ENDPOINT: z.url().default('http://127.0.0.1:4317'),
    OTEL_TRACES_SAMPLE_RATIO: num(1, 0, 1),
    LOG_LEVEL: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace']).default('info'),
  })
  .transform((e) => ({
    enabled: e.OTEL_ENABLED,
    otlpEndpoint: e.OTEL_EXPORTER_OTLP_ENDPOINT,
    sampleRatio: e.OTEL_TRACES_SAMPLE_RATIO,
    logLevel: e.LOG_LEVEL,
  }));

const MQTT_URL_FORMAT = /^mqtts?:\/\/[^/?#]+/;
const DEFAULT_MQTT_URL = 'mqtt://127.0.0.1:1883';

/** `host:port` of a broker URL (the default port of its scheme when it names none), without credentials. */
export function brokerAddress(url: string): string {
  const parsed = new URL(url);
  return `${parsed.hostname}:${parsed.port || (parsed.protocol === 'mqtts:' ? '8883' : '1883')}`;
}

export const mqttSection = z
  .object({
    /** One broker (the default). With several independent brokers, MQTT_URLS instead. */
    MQTT_URL: z.string().regex(MQTT_URL_FORMAT, 'must start with mqtt:// or mqtts://').optional(),
    /**
     * Several independent brokers, comma-separated, devices partitioned between them (docs/adr/0008):
     * dmp-mqtt consumes from each, dmp-kernel sends commands through each. The order names the brokers
     * (dmp-mqtt's client id on broker N > 0 ends in `-bN`): append new brokers at the end.
     */
    MQTT_URLS: z
      .string()
      .optional()
      .transform((v) =>
        v
          ?.split(',')
          .map((url) => url.trim())
          .filter(Boolean),
      ),
    MQTT_USERNAME: z.string().optional(),
    MQTT_PASSWORD: optionalSecret(),
    MQTT_CLIENT_ID_PREFIX: z.string().default('dmp-mqtt'),
    MQTT_SHARE_GROUP: z
      .string()
      .regex(/^[A-Za-z0-9_-]+$/)
      .default('dmp'),
    MQTT_TOPICS: list('devices/+/telemetry,devices/+/event,devices/+/snapshot,devices/+/heartbeat'),
    /**
     * MQTT 5 Receive Maximum: unacknowledged QoS1 messages the broker may have in flight to us. What is
     * in flight is throughput × hand-off time; dmp-mqtt keeps up to 8 × 500 in Ingest calls, and as many
     * again fill the next batches — below that, intake pauses while dmp-kernel has room.
     */
    MQTT_RECEIVE_MAXIMUM: int(8000, 1, 65535),
  })
  .superRefine((e, ctx) => {
    if (e.MQTT_URLS === undefined) return;
    const problem = brokerListProblem(e.MQTT_URLS, e.MQTT_URL);
    if (problem) ctx.addIssue({ code: 'custom', path: ['MQTT_URLS'], message: problem });
  })
  .transform((e) => {
    const urls = e.MQTT_URLS ?? [e.MQTT_URL ?? DEFAULT_MQTT_URL];
    return {
      /** The first broker (the only one unless MQTT_URLS names several). */
      url: urls[0],
      urls,
      username: e.MQTT_USERNAME,
      password: e.MQTT_PASSWORD,
      clientIdPrefix: e.MQTT_CLIENT_ID_PREFIX,
      shareGroup: e.MQTT_SHARE_GROUP,
      topics: e.MQTT_TOPICS,
      receiveMaximum: e.MQTT_RECEIVE_MAXIMUM,
    };
  });

/**
 * What is wrong with MQTT_URLS (undefined: nothing). Each entry a broker URL, each broker once (by
 * host and port), and MQTT_URL — when it is set as well, e.g. left over from a one-broker setup — one
 * of them: anything else would leave it unclear which brokers are meant.
 */
export function brokerListProblem(urls: readonly string[], single?: string): string | undefined {
  if (urls.length === 0) return 'is empty: name at least one broker, or unset it and use MQTT_URL';
  const malformed = urls.filter((url) => !MQTT_URL_FORMAT.test(url) || !URL.canParse(url));
  if (malformed.length > 0)
    return `${malformed.join(', ')}: each broker URL must start with mqtt:// or mqtts:// and name a host`;
  const addresses = urls.map(brokerAddress);
  const repeated = addresses.filter((address, i) => addresses.indexOf(address) !== i);
  if (repeated.length > 0) return `names ${[...new Set(repeated)].join(', ')} more than once`;
  if (single !== undefined && !urls.includes(single))
    return `MQTT_URL=${single} is set too and is not one of MQTT_URLS: set one of the two`;
  return undefined;
}

export const redisSection = z
  .object({
    REDIS_URL: z
      .string()
      .regex(/^rediss?:\/\//)
      .superRefine(refineUrlPassword)
      .default('redis://127.0.0.1:6379'),
  })
  .transform((e) => ({ url: e.REDIS_URL }));

export const rocketmqSection = z
  .object({
    ROCKETMQ_ENDPOINTS: z.string().default('127.0.0.1:8081'),
    ROCKETMQ_NAMESPACE: z.string().default(''),
    ROCKETMQ_TOPIC_EVENT: z.string().default('dmp_telemetry_event'),
    ROCKETMQ_TOPIC_SNAPSHOT: z.string().default('dmp_telemetry_snapshot'),
    ROCKETMQ_TOPIC_ALARM: z.string().default('dmp_alarm'),
    ROCKETMQ_TOPIC_COMMAND: z.string().default('dmp_command'),
    ROCKETMQ_TOPIC_DEAD_LETTER: z.string().default('dmp_dead_letter'),
  })
  .transform((e) => ({
    endpoints: e.ROCKETMQ_ENDPOINTS,
    namespace: e.ROCKETMQ_NAMESPACE,
    topics: {
      event: e.ROCKETMQ_TOPIC_EVENT,
      snapshot: e.ROCKETMQ_TOPIC_SNAPSHOT,
      alarm: e.ROCKETMQ_TOPIC_ALARM,
      command: e.ROCKETMQ_TOPIC_COMMAND,
      deadLetter: e.ROCKETMQ_TOPIC_DEAD_LETTER,
    },
  }));

export const clickhouseSection = z
  .object({
    CLICKHOUSE_URL: z.url().default('http://127.0.0.1:8123'),
    CLICKHOUSE_USER: z.string().default('default'),
    /** Unset: no password (the local stack's `default` user); docker/ sets one. */
    CLICKHOUSE_PASSWORD: optionalSecret(),
    CLICKHOUSE_DATABASE: z
      .string()
      .regex(/^[A-Za-z_][A-Za-z0-9_]*$/)
      .default('dmp'),
    /** Per request: a request not answered within it fails (an insert is then retried). */
    CLICKHOUSE_REQUEST_TIMEOUT_MS: int(30_000, 1_000, 3_600_000),
    /**
     * Unset: one server (the default). Set: the name of a cluster in the servers' `remote_servers`;
     * the schema becomes replicated local tables plus Distributed tables sharded by device (docs/operations.md).
     */
    CLICKHOUSE_CLUSTER: z
      .string()
      .regex(/^[A-Za-z_][A-Za-z0-9_]*$/, 'must be a plain cluster name (letters, digits, _)')
      .optional(),
  })
  .transform((e) => ({
    url: e.CLICKHOUSE_URL,
    username: e.CLICKHOUSE_USER,
    password: e.CLICKHOUSE_PASSWORD ?? '',
    database: e.CLICKHOUSE_DATABASE,
    requestTimeoutMs: e.CLICKHOUSE_REQUEST_TIMEOUT_MS,
    ...(e.CLICKHOUSE_CLUSTER ? { cluster: e.CLICKHOUSE_CLUSTER } : {}),
  }));

/** Address of dmp-kernel's gRPC ingest service, served by dmp-kernel and called by dmp-mqtt. */
export const kernelGrpcSection = z
  .object({ KERNEL_GRPC_URL: z.string().default('127.0.0.1:50051') })
  .transform((e) => ({ url: e.KERNEL_GRPC_URL }));
