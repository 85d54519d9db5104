import { hostname } from 'node:os';
import { httpSection, int, kernelGrpcSection, loadConfig, mqttSection, telemetrySection } from '@dmp/config';
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
    /** On SIGTERM: how long to wait for in-flight messages to be handed off and acknowledged. */
    MQTT_DRAIN_TIMEOUT_MS: int(15_000, 0, 600_000),
    /** Micro-batching of the hand-off to dmp-kernel: a batch closes at this many messages… */
    KERNEL_BATCH_MAX_MESSAGES: int(500, 1, 10_000),
    /** …or this long after its first message, whichever comes first. */
    KERNEL_BATCH_LINGER_MS: int(5, 0, 10_000),
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
    drainTimeoutMs: e.MQTT_DRAIN_TIMEOUT_MS,
    kernel: {
      maxBatchMessages: e.KERNEL_BATCH_MAX_MESSAGES,
      batchLingerMs: e.KERNEL_BATCH_LINGER_MS,
      maxConcurrentCalls: e.KERNEL_MAX_CONCURRENT_CALLS,
      callTimeoutMs: e.KERNEL_CALL_TIMEOUT_MS,
      retry: {
        baseMs: e.KERNEL_RETRY_BASE_MS,
        maxBackoffMs: e.KERNEL_RETRY_MAX_BACKOFF_MS,
        deadlineMs: e.KERNEL_RETRY_DEADLINE_MS,
      },
    },
  }));

export function loadMqttConfig(env?: Record<string, string | undefined>) {
  const config = loadConfig(
    {
      http: httpSection(3001),
      telemetry: telemetrySection,
      mqtt: mqttSection,
      kernelGrpc: kernelGrpcSection,
      ingest: ingestSection,
    },
    env,
  );
  const clientId = config.ingest.clientId ?? `${config.mqtt.clientIdPrefix}-${hostname()}`;
  return { ...config, ingest: { ...config.ingest, clientId } };
}

export type MqttAppConfig = ReturnType<typeof loadMqttConfig>;

/** Nest injection token of the validated configuration. */
export const MQTT_APP_CONFIG = Symbol('MQTT_APP_CONFIG');
