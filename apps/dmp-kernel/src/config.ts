import {
  bool,
  cleaningSection,
  httpSection,
  int,
  kernelGrpcSection,
  list,
  loadConfig,
  mqttSection,
  optionalSecret,
  redisSection,
  rocketmqSection,
  telemetrySection,
} from '@dmp/config';
import { hostname } from 'node:os';
import { z } from 'zod';
import { parseNetwork } from './egress/egress-policy';

/** dmp-kernel's own settings. */
const kernelSection = z
  .object({
    /** Snapshot sends in flight before further snapshots are shed (answered retryable). */
    KERNEL_SNAPSHOT_MAX_IN_FLIGHT: int(2000, 1),
    /**
     * Device shards of the telemetry topics: a shard is one RocketMQ message group (FIFO), and its
     * messages travel in packs. More shards spread over more queues (and consumers); fewer make bigger
     * packs (each RocketMQ send, receive and ack costs the same whatever it carries: at 32 shards the
     * packs stayed at ~6 messages and the broker's work per message did not fall). Changing it moves
     * devices to other shards: do it with the kernels stopped and drained.
     */
    KERNEL_PACK_SHARDS: int(8, 1, 4096),
    /** Device messages per pack at most… */
    KERNEL_PACK_MAX_MESSAGES: int(500, 1, 10_000),
    /** …and bytes of their JSON (RocketMQ's default body limit is 4 MiB). */
    KERNEL_PACK_MAX_BYTES: int(1024 * 1024, 1024, 4 * 1024 * 1024 - 64 * 1024),
    /**
     * How long a pack that is not full waits for more messages after its first (0: none). Every
     * RocketMQ send, receive and ack costs about the same whatever the pack carries: without it a
     * lane with quick sends sends nearly every message alone (README, Performance). Each message
     * waits up to this long more; a batch's messages wait it once, together.
     */
    KERNEL_PACK_LINGER_MS: int(100, 0, 1_000),
    /**
     * A lane (topic and shard) is full once this many device messages wait for its next send… An
     * Ingest call that would add to a full lane adds nothing and answers RESOURCE_EXHAUSTED (code
     * DMP_ERR_LANE_FULL); dmp-mqtt retries it with its backoff. The default is ten full packs.
     */
    KERNEL_PACK_LANE_MAX_MESSAGES: int(5_000, 1, 1_000_000),
    /** …or this many bytes of their JSON: with 8 shards, two topics, at most 16 × this waits. */
    KERNEL_PACK_LANE_MAX_BYTES: int(4 * 1024 * 1024, 1024, 1024 * 1024 * 1024),
    /**
     * Largest gRPC message accepted or sent, in bytes (default 16 MiB); also the Ingest server's HTTP/2
     * receive window.
     */
    KERNEL_GRPC_MAX_MESSAGE_BYTES: int(16 * 1024 * 1024, 1024),
    /**
     * A client connection to the Ingest server is closed (GOAWAY, its calls finishing first) this long
     * after it opened; the client reconnects and resolves the kernel's name again, so kernel pods added
     * behind a headless Service get calls too (0: never).
     */
    KERNEL_GRPC_MAX_CONNECTION_AGE_MS: int(300_000, 0, 86_400_000),
    /** Bearer token of the admin API (`/rules`, `/alarms`); without it those endpoints answer 503. */
    ADMIN_TOKEN: optionalSecret(16),
  })
  .transform((e) => ({
    snapshotMaxInFlight: e.KERNEL_SNAPSHOT_MAX_IN_FLIGHT,
    pack: {
      shards: e.KERNEL_PACK_SHARDS,
      maxItems: e.KERNEL_PACK_MAX_MESSAGES,
      maxBytes: e.KERNEL_PACK_MAX_BYTES,
      lingerMs: e.KERNEL_PACK_LINGER_MS,
      maxWaitingItems: e.KERNEL_PACK_LANE_MAX_MESSAGES,
      maxWaitingBytes: e.KERNEL_PACK_LANE_MAX_BYTES,
    },
    grpcMaxMessageBytes: e.KERNEL_GRPC_MAX_MESSAGE_BYTES,
    grpcMaxConnectionAgeMs: e.KERNEL_GRPC_MAX_CONNECTION_AGE_MS,
    adminToken: e.ADMIN_TOKEN,
  }));

/** Device metadata enrichment (Redis registry `dmp:device:{id}`, cached here). */
const enrichmentSection = z
  .object({
    DEVICE_CACHE_MAX_ENTRIES: int(200_000, 1, 10_000_000),
    /**
     * How long cached metadata is trusted. Changes arrive at once through `dmp:device-changed` (and the
     * whole cache is dropped when that subscription was lost), so this only bounds a missed notice; it
     * outlasts a device's 5-minute snapshot interval, else nearly every message at the design load would
     * miss the cache and cost a Redis lookup.
     */
    DEVICE_CACHE_TTL_MS: int(600_000, 1, 86_400_000),
    /** …and how long "no such device" is. */
    DEVICE_UNKNOWN_CACHE_TTL_MS: int(5_000, 1, 3_600_000),
  })
  .transform((e) => ({
    cacheMaxEntries: e.DEVICE_CACHE_MAX_ENTRIES,
    cacheTtlMs: e.DEVICE_CACHE_TTL_MS,
    unknownCacheTtlMs: e.DEVICE_UNKNOWN_CACHE_TTL_MS,
  }));

/** The rule engine: rule files, their evaluation from the telemetry topics, actions. */
const rulesSection = z
  .object({
    /** The rule set's directory (rule files, `products/`), relative to the working directory. */
    KERNEL_RULES_DIR: z.string().min(1).default('rules'),
    /** Reload when a file of the directory changes. */
    KERNEL_RULES_WATCH: bool(true),
    KERNEL_RULES_WATCH_DEBOUNCE_MS: int(300, 0, 60_000),
    /** Evaluate rules (consume the telemetry topics with KERNEL_RULES_GROUP). */
    KERNEL_RULES_ENABLED: bool(true),
    /** Consumer group of the rule evaluation (orderly: FIFO per device). */
    KERNEL_RULES_GROUP: z
      .string()
      .regex(/^[A-Za-z0-9_%|-]+$/)
      .default('dmp_kernel_rules'),
    KERNEL_RULES_POLLERS: int(4, 1, 256),
    KERNEL_RULES_MAX_IN_FLIGHT: int(2_000, 1, 1_000_000),
    KERNEL_RULES_MAX_DELIVERY_ATTEMPTS: int(100, 1, 1_000_000),
    /**
     * Prefix of the Redis keys the kernel owns (state, alarms, outbox): `{ns}:state:{id}`… Replicas of one
     * deployment share it; separate deployments (or test runs) on one Redis use their own.
     */
    KERNEL_REDIS_NAMESPACE: z
      .string()
      .regex(/^[A-Za-z0-9_.:-]{1,64}$/)
      .default('dmp'),
    /** Days a device's recent state (`{ns}:state:{id}`) is kept after its last message. */
    KERNEL_STATE_TTL_DAYS: int(7, 1, 3650),
    /** How often pending conditions whose duration elapsed are raised without a new message. */
    KERNEL_ALARM_SWEEP_MS: int(1_000, 50, 3_600_000),
    /** Alarm events written but not confirmed sent this long are sent again. */
    KERNEL_ALARM_OUTBOX_RETRY_MS: int(10_000, 100, 3_600_000),
    /** Outbox retries back off from KERNEL_ALARM_OUTBOX_RETRY_MS, doubling up to this. */
    KERNEL_OUTBOX_RETRY_MAX_MS: int(600_000, 100, 86_400_000),
    /** Failed attempts after which a command or webhook is given up and dead-lettered (replayable). */
    KERNEL_OUTBOX_MAX_ATTEMPTS: int(20, 1, 1_000_000),
    /** MQTT client id for linkage commands (default dmp-kernel-{host}-{pid}). */
    KERNEL_MQTT_CLIENT_ID: z
      .string()
      .regex(/^[A-Za-z0-9_.:-]{1,128}$/)
      .optional(),
    /** How long a command waits for the broker's PUBACK. */
    KERNEL_COMMAND_TIMEOUT_MS: int(5_000, 100, 600_000),
    /** A command's time to live when its rule gives none (`ttl:`): unanswered by then, it expires. */
    KERNEL_COMMAND_TTL_MS: int(30_000, 1_000, 86_400_000),
    /** How often an operator may resend one failed or expired command (`dmp commands resend`). */
    KERNEL_COMMAND_MAX_RESENDS: int(3, 0, 100),
    /** How long the ledger keeps a command in Redis (ClickHouse keeps it for good). */
    KERNEL_COMMAND_RETENTION_MS: int(7 * 86_400_000, 60_000, 365 * 86_400_000),
    /** The MQTT shared-subscription group the kernel's replicas take device replies in. */
    KERNEL_COMMAND_REPLY_GROUP: z
      .string()
      .regex(/^[A-Za-z0-9_-]{1,64}$/)
      .default('dmp-kernel'),
    KERNEL_WEBHOOK_CONCURRENCY: int(16, 1, 1_000),
    /** Webhook deliveries queued; beyond it new ones are dropped (counted, logged). */
    KERNEL_WEBHOOK_QUEUE_MAX: int(10_000, 1, 1_000_000),
    KERNEL_WEBHOOK_TIMEOUT_MS: int(5_000, 100, 600_000),
    KERNEL_WEBHOOK_MAX_RETRIES: int(5, 0, 100),
    KERNEL_WEBHOOK_RETRY_BASE_MS: int(500, 1, 600_000),
    KERNEL_WEBHOOK_RETRY_MAX_MS: int(30_000, 1, 3_600_000),
    /** Secrets `${secret:NAME}` in webhook URLs and headers refer to: a JSON object of strings. */
    KERNEL_WEBHOOK_SECRETS: z
      .string()
      .default('{}')
      .transform((text, ctx) => {
        try {
          const value: unknown = JSON.parse(text);
          if (value && typeof value === 'object' && !Array.isArray(value)) {
            const entries = Object.entries(value as Record<string, unknown>);
            if (entries.every(([, v]) => typeof v === 'string'))
              return Object.fromEntries(entries) as Record<string, string>;
          }
        } catch {
          // reported below
        }
        ctx.addIssue({ code: 'custom', message: 'must be a JSON object of strings' });
        return z.NEVER;
      }),
    /** Networks webhooks may reach although not public (loopback, private, link-local…): comma-separated CIDRs. */
    KERNEL_WEBHOOK_ALLOW_NETWORKS: list('').transform((networks, ctx) => {
      const invalid = networks.filter((n) => !parseNetwork(n));
      if (invalid.length === 0) return networks;
      ctx.addIssue({ code: 'custom', message: `not CIDR notation: ${invalid.join(', ')}` });
      return z.NEVER;
    }),
  })
  .transform((e) => ({
    dir: e.KERNEL_RULES_DIR,
    watch: e.KERNEL_RULES_WATCH,
    watchDebounceMs: e.KERNEL_RULES_WATCH_DEBOUNCE_MS,
    enabled: e.KERNEL_RULES_ENABLED,
    group: e.KERNEL_RULES_GROUP,
    pollers: e.KERNEL_RULES_POLLERS,
    maxInFlight: e.KERNEL_RULES_MAX_IN_FLIGHT,
    maxDeliveryAttempts: e.KERNEL_RULES_MAX_DELIVERY_ATTEMPTS,
    redisNamespace: e.KERNEL_REDIS_NAMESPACE,
    stateTtlSeconds: e.KERNEL_STATE_TTL_DAYS * 86_400,
    alarmSweepMs: e.KERNEL_ALARM_SWEEP_MS,
    alarmOutboxRetryMs: e.KERNEL_ALARM_OUTBOX_RETRY_MS,
    outboxRetryMaxMs: e.KERNEL_OUTBOX_RETRY_MAX_MS,
    outboxMaxAttempts: e.KERNEL_OUTBOX_MAX_ATTEMPTS,
    mqttClientId: e.KERNEL_MQTT_CLIENT_ID ?? `dmp-kernel-${hostname()}-${process.pid}`.slice(0, 128),
    commandTimeoutMs: e.KERNEL_COMMAND_TIMEOUT_MS,
    commands: {
      ttlMs: e.KERNEL_COMMAND_TTL_MS,
      maxResends: e.KERNEL_COMMAND_MAX_RESENDS,
      retentionMs: e.KERNEL_COMMAND_RETENTION_MS,
      replyGroup: e.KERNEL_COMMAND_REPLY_GROUP,
    },
    webhook: {
      concurrency: e.KERNEL_WEBHOOK_CONCURRENCY,
      queueMax: e.KERNEL_WEBHOOK_QUEUE_MAX,
      timeoutMs: e.KERNEL_WEBHOOK_TIMEOUT_MS,
      maxRetries: e.KERNEL_WEBHOOK_MAX_RETRIES,
      retryBaseMs: e.KERNEL_WEBHOOK_RETRY_BASE_MS,
      retryMaxMs: e.KERNEL_WEBHOOK_RETRY_MAX_MS,
      secrets: e.KERNEL_WEBHOOK_SECRETS,
      allowNetworks: e.KERNEL_WEBHOOK_ALLOW_NETWORKS,
    },
  }));

export function loadKernelConfig(env?: Record<string, string | undefined>) {
  return loadConfig(
    {
      http: httpSection(3002),
      telemetry: telemetrySection,
      grpc: kernelGrpcSection,
      rocketmq: rocketmqSection,
      redis: redisSection,
      mqtt: mqttSection,
      kernel: kernelSection,
      enrichment: enrichmentSection,
      rules: rulesSection,
      /** The same DATA_CLEAN_* limits as dmp-data's: rules see only what storage keeps. */
      cleaning: cleaningSection,
    },
    env,
  );
}

export type KernelConfig = ReturnType<typeof loadKernelConfig>;

/** Injection token of the validated configuration. */
export const KERNEL_CONFIG = Symbol('KERNEL_CONFIG');
