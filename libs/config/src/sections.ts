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

export const mqttSection = z
  .object({
    MQTT_URL: z
      .string()
      .regex(/^mqtts?:\/\//, 'must start with mqtt:// or mqtts://')
      .default('mqtt://127.0.0.1:1883'),
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
  .transform((e) => ({
    url: e.MQTT_URL,
    username: e.MQTT_USERNAME,
    password: e.MQTT_PASSWORD,
    clientIdPrefix: e.MQTT_CLIENT_ID_PREFIX,
    shareGroup: e.MQTT_SHARE_GROUP,
    topics: e.MQTT_TOPICS,
    receiveMaximum: e.MQTT_RECEIVE_MAXIMUM,
  }));

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
