import { hostname } from 'node:os';
import {
  bool,
  brokerAddress,
  httpSection,
  int,
  kernelGrpcSection,
  list,
  loadConfig,
  mqttSection,
  num,
  optionalSecret,
  redisSection,
  rocketmqSection,
  secret,
  telemetrySection,
} from '@dmp/config';
import { z } from 'zod';

/** dmp-mqtt's own settings: the MQTT session, payload limits, and the hand-off to dmp-kernel. */
export const ingestSection = z
  .object({
    /**
     * MQTT client id of this replica. It must be stable across restarts of the same replica (the persistent
     * session holding unacknowledged messages is found by it) and unique among live replicas (a second
     * connection with the same id takes the session over). Default `{MQTT_CLIENT_ID_PREFIX}-{hostname}`, which
     * fits one replica per host or a StatefulSet; set it explicitly when several replicas share a host.
     */
    MQTT_CLIENT_ID: z
      .string()
      .regex(/^[A-Za-z0-9_.:-]{1,128}$/)
      .optional(),
    /** How long the broker keeps this replica's session (and the messages it holds) after a crash. */
    MQTT_SESSION_EXPIRY_SECONDS: int(300, 0, 0xffff_ffff),
    MQTT_KEEPALIVE_SECONDS: int(30, 5, 0xffff),
    /** Larger payloads are rejected (DMP_ERR_PAYLOAD_TOO_LARGE) before any parsing. */
    MQTT_MAX_PAYLOAD_BYTES: int(64 * 1024, 64, 16 * 1024 * 1024),
    /**
     * Payload bytes held unacknowledged at most: intake pauses above it, as at MQTT_RECEIVE_MAXIMUM
     * messages (which alone would allow 8000 × 64 KiB = 512 MiB of large messages).
     */
    MQTT_MAX_IN_FLIGHT_BYTES: int(64 * 1024 * 1024, 1024, 4 * 1024 * 1024 * 1024),
    /** On SIGTERM: how long to wait for in-flight messages to be handed off and acknowledged. */
    MQTT_DRAIN_TIMEOUT_MS: int(15_000, 0, 600_000),
    /**
     * What a graceful stop does with the subscription. `keep-session`: stay subscribed, take nothing new,
     * finish what is in flight and disconnect keeping the session — the broker queues this replica's share
     * until it is back (or, once the session expires, hands it to the other replicas): nothing is lost,
     * even with one replica. `hand-over`: unsubscribe first so the other replicas take new messages at
     * once, drain, end the session — what devices publish while no replica is subscribed is dropped by
     * the broker, so use it only to scale down with other replicas running.
     */
    MQTT_STOP_MODE: z.enum(['keep-session', 'hand-over']).default('keep-session'),
    /** Micro-batching of the hand-off to dmp-kernel: a batch closes at this many messages… */
    KERNEL_BATCH_MAX_MESSAGES: int(500, 1, 10_000),
    /** …or this long after its first message, whichever comes first. */
    KERNEL_BATCH_LINGER_MS: int(5, 0, 10_000),
    /**
     * Messages of one device in one Ingest call at most; the device's next ones go once those are final
     * (1: one message per device per round trip).
     */
    KERNEL_BATCH_MAX_PER_DEVICE: int(16, 1, 10_000),
    /** Ingest calls in flight at once. */
    KERNEL_MAX_CONCURRENT_CALLS: int(8, 1, 256),
    /** gRPC deadline of one Ingest call. */
    KERNEL_CALL_TIMEOUT_MS: int(5_000, 100, 600_000),
    /** Retrying a message the kernel could not take (unreachable, retryable outcome): first backoff… */
    KERNEL_RETRY_BASE_MS: int(100, 1, 60_000),
    /** …doubling up to this… */
    KERNEL_RETRY_MAX_BACKOFF_MS: int(5_000, 1, 600_000),
    /** …for at most this long; then the message is left unacknowledged and the broker redelivers it. */
    KERNEL_RETRY_DEADLINE_MS: int(30_000, 0, 3_600_000),
  })
  .transform((e) => ({
    clientId: e.MQTT_CLIENT_ID,
    sessionExpirySeconds: e.MQTT_SESSION_EXPIRY_SECONDS,
    keepaliveSeconds: e.MQTT_KEEPALIVE_SECONDS,
    maxPayloadBytes: e.MQTT_MAX_PAYLOAD_BYTES,
    maxInFlightBytes: e.MQTT_MAX_IN_FLIGHT_BYTES,
    drainTimeoutMs: e.MQTT_DRAIN_TIMEOUT_MS,
    stopMode: e.MQTT_STOP_MODE,
    kernel: {
      maxBatchMessages: e.KERNEL_BATCH_MAX_MESSAGES,
      batchLingerMs: e.KERNEL_BATCH_LINGER_MS,
      maxPerDevice: e.KERNEL_BATCH_MAX_PER_DEVICE,
      maxConcurrentCalls: e.KERNEL_MAX_CONCURRENT_CALLS,
      callTimeoutMs: e.KERNEL_CALL_TIMEOUT_MS,
      retry: {
        baseMs: e.KERNEL_RETRY_BASE_MS,
        maxBackoffMs: e.KERNEL_RETRY_MAX_BACKOFF_MS,
        deadlineMs: e.KERNEL_RETRY_DEADLINE_MS,
      },
    },
  }));

/**
 * The edge's guards: device registry and authentication, duplicates, rate limits (docs/devices.md).
 */
export const edgeSection = z
  .object({
    /** Bearer token of the admin endpoints (`/admin/devices`). Required: there is no default. */
    ADMIN_TOKEN: secret(16),
    /**
     * The MQTT service account (superuser for EMQX: dmp-mqtt itself, and `dmp dead-letters replay`).
     * Defaults to MQTT_USERNAME / MQTT_PASSWORD, the credentials dmp-mqtt connects with.
     */
    MQTT_SERVICE_USERNAME: z.string().min(1).optional(),
    MQTT_SERVICE_PASSWORD: optionalSecret(),
    /**
     * EMQX's calls to /auth/mqtt/* must carry it in the `x-dmp-auth-secret` header (emqx.conf sends it
     * from DMP_MQTT_AUTH_HTTP_SECRET); calls without it are denied. Required: whoever reaches port 3001
     * could otherwise answer "allow" for itself.
     */
    MQTT_AUTH_HTTP_SECRET: secret(16),
    /**
     * Only registered, enabled devices get through (DMP_ERR_UNKNOWN_DEVICE otherwise). `false` lets any
     * well-formed device id through — for development against an unprovisioned broker only.
     */
    DEVICE_REGISTRY_REQUIRED: bool(true),
    /**
     * How long a registry lookup is trusted. Changes arrive at once through Redis pub/sub (and the whole
     * cache is dropped when that subscription was lost), so this only bounds a missed notice; it outlasts
     * a device's 5-minute snapshot interval, else nearly every message would cost a Redis lookup.
     */
    DEVICE_CACHE_TTL_MS: int(600_000, 0, 3_600_000),
    /** …and how long "not registered" is (short: a newly registered device is seen through pub/sub anyway). */
    DEVICE_UNKNOWN_CACHE_TTL_MS: int(5_000, 0, 3_600_000),
    DEVICE_CACHE_MAX_ENTRIES: int(200_000, 1, 10_000_000),
    /**
     * How long a message waits for the registry when Redis does not answer and nothing is cached about
     * its device. Past it the message is left unacknowledged, without holding back the acknowledgements
     * of the messages behind it, and the broker redelivers it once Redis is back (docs/devices.md).
     */
    DEVICE_REGISTRY_WAIT_MS: int(2_000, 100, 60_000),
    /** Token bucket per device: sustained messages per second (0: no limit)… */
    DEVICE_RATE_LIMIT_PER_SECOND: num(20, 0, 1_000_000),
    /** …and bucket size (the burst a device may send at once). */
    DEVICE_RATE_LIMIT_BURST: int(100, 1, 1_000_000),
    /**
     * Login abuse (docs/devices.md, "Login abuse"). Failed logins per device id: a bucket of this many…
     */
    MQTT_AUTH_FAILURES_PER_ID_BURST: int(10, 1, 1_000_000),
    /** …refilled at this many per minute (0: no per-id throttle); an emptied id is refused at once. */
    MQTT_AUTH_FAILURES_PER_ID_PER_MINUTE: num(6, 0, 6_000_000),
    /** The same per peer address (IPv6 by /64): bucket… */
    MQTT_AUTH_FAILURES_PER_PEER_BURST: int(100, 1, 1_000_000),
    /** …and refill per minute (0: no per-peer throttle). */
    MQTT_AUTH_FAILURES_PER_PEER_PER_MINUTE: num(60, 0, 6_000_000),
    /** scrypt checks at once (libuv's pool has 4 threads for everything)… */
    MQTT_AUTH_MAX_CONCURRENT_HASHES: int(2, 1, 64),
    /** …and waiting; beyond it a login is denied at once (EMQX gives up after 5 s anyway). */
    MQTT_AUTH_MAX_QUEUED_HASHES: int(32, 0, 10_000),
    /** Client-id prefixes the service account may also use, besides `{MQTT_CLIENT_ID_PREFIX}-`. */
    MQTT_SERVICE_CLIENT_ID_PREFIXES: list('dmp-cli-'),
    /** Names no device may take, besides the service account's: exact, or a prefix ending in `*`. */
    DEVICE_RESERVED_IDS: list('dmp-kernel,dmp-kernel-*'),
    /** A device's message id seen again within this window is a duplicate (0: off). */
    DEDUP_MESSAGE_ID_WINDOW_MS: int(600_000, 0, 7 * 86_400_000),
    /** The same content (kind, ts, metrics) under a new message id within this window is a duplicate (0: off). */
    DEDUP_CONTENT_WINDOW_MS: int(5_000, 0, 86_400_000),
    /** Duplicate checks are sent to Redis in one pipeline per this many milliseconds… */
    DEDUP_BATCH_LINGER_MS: int(2, 0, 1_000),
    /** …or per this many messages. */
    DEDUP_BATCH_MAX: int(1_000, 1, 100_000),
  })
  .transform((e) => ({
    adminToken: e.ADMIN_TOKEN,
    service: { username: e.MQTT_SERVICE_USERNAME, password: e.MQTT_SERVICE_PASSWORD },
    authHttpSecret: e.MQTT_AUTH_HTTP_SECRET,
    registry: {
      required: e.DEVICE_REGISTRY_REQUIRED,
      cacheTtlMs: e.DEVICE_CACHE_TTL_MS,
      unknownCacheTtlMs: e.DEVICE_UNKNOWN_CACHE_TTL_MS,
      cacheMaxEntries: e.DEVICE_CACHE_MAX_ENTRIES,
      waitMs: e.DEVICE_REGISTRY_WAIT_MS,
    },
    rateLimit: { perSecond: e.DEVICE_RATE_LIMIT_PER_SECOND, burst: e.DEVICE_RATE_LIMIT_BURST },
    login: {
      perId: {
        burst: e.MQTT_AUTH_FAILURES_PER_ID_BURST,
        perSecond: e.MQTT_AUTH_FAILURES_PER_ID_PER_MINUTE / 60,
      },
      perPeer: {
        burst: e.MQTT_AUTH_FAILURES_PER_PEER_BURST,
        perSecond: e.MQTT_AUTH_FAILURES_PER_PEER_PER_MINUTE / 60,
      },
      maxConcurrentHashes: e.MQTT_AUTH_MAX_CONCURRENT_HASHES,
      maxQueuedHashes: e.MQTT_AUTH_MAX_QUEUED_HASHES,
    },
    serviceClientIdPrefixes: e.MQTT_SERVICE_CLIENT_ID_PREFIXES,
    reservedIds: e.DEVICE_RESERVED_IDS,
    dedup: {
      messageIdWindowMs: e.DEDUP_MESSAGE_ID_WINDOW_MS,
      contentWindowMs: e.DEDUP_CONTENT_WINDOW_MS,
      batchLingerMs: e.DEDUP_BATCH_LINGER_MS,
      batchMax: e.DEDUP_BATCH_MAX,
    },
  }));

/**
 * The dead-letter path of refused messages (docs/devices.md, "Dead letters"): bounded concurrent sends,
 * what waits meanwhile packed into batches (one RocketMQ message each).
 */
export const deadLetterSection = z
  .object({
    /** RocketMQ sends of dead letters in flight at once. */
    DEAD_LETTER_MAX_CONCURRENT_SENDS: int(4, 1, 256),
    /** Refused messages per RocketMQ message at most… */
    DEAD_LETTER_PACK_MAX_MESSAGES: int(256, 1, 10_000),
    /** …and bytes (payloads and properties; RocketMQ's default limit per message is 4 MiB). */
    DEAD_LETTER_PACK_MAX_BYTES: int(1024 * 1024, 1024, 4 * 1024 * 1024 - 64 * 1024),
    /** A send that failed transiently is retried after this, doubling… */
    DEAD_LETTER_RETRY_BASE_MS: int(100, 1, 60_000),
    /** …up to this, until it succeeds or the message's delivery ends (then the broker redelivers it). */
    DEAD_LETTER_RETRY_MAX_BACKOFF_MS: int(5_000, 1, 600_000),
  })
  .transform((e) => ({
    maxConcurrentSends: e.DEAD_LETTER_MAX_CONCURRENT_SENDS,
    maxItems: e.DEAD_LETTER_PACK_MAX_MESSAGES,
    maxBytes: e.DEAD_LETTER_PACK_MAX_BYTES,
    retry: { baseMs: e.DEAD_LETTER_RETRY_BASE_MS, maxMs: e.DEAD_LETTER_RETRY_MAX_BACKOFF_MS },
  }));

export function loadMqttConfig(env?: Record<string, string | undefined>) {
  const config = loadConfig(
    {
      http: httpSection(3001),
      telemetry: telemetrySection,
      mqtt: mqttSection,
      kernelGrpc: kernelGrpcSection,
      ingest: ingestSection,
      redis: redisSection,
      rocketmq: rocketmqSection,
      edge: edgeSection,
      deadLetter: deadLetterSection,
    },
    env,
  );
  const clientId = config.ingest.clientId ?? `${config.mqtt.clientIdPrefix}-${hostname()}`;
  const brokers = brokerEndpoints(config.mqtt.urls, clientId);
  const service = {
    username: config.edge.service.username ?? config.mqtt.username,
    password: config.edge.service.password ?? config.mqtt.password,
    clientIds: brokers.map((broker) => broker.clientId),
    clientIdPrefixes: [`${config.mqtt.clientIdPrefix}-`, ...config.edge.serviceClientIdPrefixes],
    reservedIds: config.edge.reservedIds,
  };
  return {
    ...config,
    ingest: { ...config.ingest, clientId, brokers },
    edge: { ...config.edge, service },
  };
}

/**
 * The brokers dmp-mqtt consumes from, each with this replica's client id on it: the replica's own on
 * the first broker (a fleet that grows from one broker to several keeps its session there), `-b{N}`
 * appended on broker N. Ids follow the order of MQTT_URLS: new brokers go at the end.
 */
export function brokerEndpoints(urls: readonly string[], clientId: string) {
  return urls.map((url, index) => ({
    url,
    clientId: index === 0 ? clientId : `${clientId}-b${index}`,
    address: brokerAddress(url),
  }));
}

export type MqttAppConfig = ReturnType<typeof loadMqttConfig>;

/** Nest injection token of the validated configuration. */
export const MQTT_APP_CONFIG = Symbol('MQTT_APP_CONFIG');
