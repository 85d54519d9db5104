/**
 * What the rule engine's end-to-end tests share (rules, commands, reprocess, rule-redelivery): the
 * names of a run's own resources — topics and consumer groups `dmp_<name>_test_*`, Redis namespace,
 * ClickHouse database —, a rules directory written from `{path: text}`, dmp-kernel and dmp-data started
 * as real processes on those resources, the kernel's gRPC Ingest as dmp-mqtt calls it, devices in the
 * registry as dmp-mqtt's registry writes them, and an HTTP receiver for webhooks. Each test keeps what
 * is its own: its rules, its extra settings, its observers and devices.
 */
import {
  DEVICE_CHANGED_CHANNEL,
  deviceRegistryKey,
  type IngestOutcome,
  type KernelIngestStub,
  TELEMETRY_LOADER_OPTIONS,
  TELEMETRY_PROTO_PATH,
  type TelemetryGrpcPackage,
  type TelemetryRequest,
} from '@dmp/contracts';
import {
  chainTopicTypes,
  type ChainTopics,
  createRocketmqResources,
  freePort,
  startApp,
  type RocketmqResources,
  type RunningApp,
} from '@dmp/testing';
import { credentials, loadPackageDefinition } from '@grpc/grpc-js';
import { loadSync } from '@grpc/proto-loader';
import type { Redis } from 'ioredis';
import { randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer, type IncomingHttpHeaders } from 'node:http';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';

/** A run's own resources, named after the test (`rules`) and a random run id. */
export interface PipelineNames {
  name: string;
  run: string;
  /** `dmp_test_<name>_<run>`, dropped at the end. */
  database: string;
  /** The kernel's Redis keys (state, alarms, outbox) under `dmp-<name>-e2e-<run>:`. */
  namespace: string;
  topics: ChainTopics;
  groups: { rules: string; data: string; alarm: string; dlq: string };
}

export function pipelineNames(name: string, run = randomBytes(3).toString('hex')): PipelineNames {
  const own = (role: string) => `dmp_${name}_test_${role}`;
  return {
    name,
    run,
    database: `dmp_test_${name}_${run}`,
    namespace: `dmp-${name}-e2e-${run}`,
    topics: {
      event: own('event'),
      snapshot: own('snapshot'),
      alarm: own('alarm'),
      deadLetter: own('dead_letter'),
    },
    groups: { rules: own('rules'), data: own('data'), alarm: own('alarm'), dlq: own('dlq') },
  };
}

/** Creates the run's topics and groups in RocketMQ, and the test's own `extra` ones. */
export async function createPipelineResources(
  names: PipelineNames,
  extra: RocketmqResources = {},
): Promise<void> {
  const { topics, groups } = names;
  await createRocketmqResources({
    topics: { ...chainTopicTypes(topics), ...extra.topics },
    groups: {
      [groups.rules]: 'orderly',
      [groups.data]: 'orderly',
      [groups.alarm]: 'orderly',
      [groups.dlq]: 'concurrently',
      ...extra.groups,
    },
  });
}

/** A temporary rules directory holding `files` (`{path: text}`, sub-folders made as needed). */
export async function writeRulesDir(prefix: string, files: Record<string, string>): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), prefix));
  for (const [path, text] of Object.entries(files)) {
    await mkdir(dirname(join(dir, path)), { recursive: true });
    await writeFile(join(dir, path), text);
  }
  return dir;
}

/** The settings of every app of the run: its topics. */
export function pipelineEnv(names: PipelineNames): Record<string, string> {
  return {
    ROCKETMQ_TOPIC_EVENT: names.topics.event,
    ROCKETMQ_TOPIC_SNAPSHOT: names.topics.snapshot,
    ROCKETMQ_TOPIC_ALARM: names.topics.alarm,
    ROCKETMQ_TOPIC_DEAD_LETTER: names.topics.deadLetter,
    LOG_LEVEL: 'info',
  };
}

/** The settings of a dmp-kernel on the run's topics, group, namespace and rules directory. */
export function kernelEnv(names: PipelineNames, rulesDir: string, grpcUrl: string): Record<string, string> {
  return {
    ...pipelineEnv(names),
    KERNEL_GRPC_URL: grpcUrl,
    KERNEL_RULES_DIR: rulesDir,
    KERNEL_RULES_GROUP: names.groups.rules,
    KERNEL_REDIS_NAMESPACE: names.namespace,
    KERNEL_MQTT_CLIENT_ID: `${names.name}-e2e-kernel-${names.run}`,
  };
}

export interface PipelineOptions {
  /** The rule set, `{path: text}`. */
  rules: Record<string, string>;
  /** Settings of both apps (topics of the test's own, …). */
  env?: Record<string, string>;
  kernel?: Record<string, string>;
  data?: Record<string, string>;
}

export interface Pipeline {
  kernel: RunningApp;
  data: RunningApp;
  client: KernelIngestStub;
  rulesDir: string;
  /** Calls the kernel's gRPC Ingest (30 s deadline): each message's outcome. */
  ingest(messages: TelemetryRequest[]): Promise<IngestOutcome[]>;
  /** Stops both apps, closes the client, removes the rules directory. */
  stop(): Promise<void>;
}

/**
 * Writes the rules directory and starts dmp-data and dmp-kernel on the run's resources (created before,
 * {@link createPipelineResources}); apps' logs in .stack/logs/tests/<name>-<run>-<app>.log.
 */
export async function startPipeline(names: PipelineNames, options: PipelineOptions): Promise<Pipeline> {
  const rulesDir = await writeRulesDir(`dmp-${names.name}-e2e-`, options.rules);
  const grpcUrl = `127.0.0.1:${await freePort()}`;
  const label = (app: string) => ({ label: `${names.name}-${names.run}-${app}` });
  const started = await Promise.allSettled([
    startApp(
      'dmp-data',
      {
        ...pipelineEnv(names),
        CLICKHOUSE_DATABASE: names.database,
        DATA_CONSUMER_GROUP: names.groups.data,
        ALARM_CONSUMER_GROUP: names.groups.alarm,
        DEAD_LETTER_CONSUMER_GROUP: names.groups.dlq,
        DATA_BATCH_MAX_WAIT_MS: '100',
        ...options.env,
        ...options.data,
      },
      label('dmp-data'),
    ),
    startApp(
      'dmp-kernel',
      {
        ...kernelEnv(names, rulesDir, grpcUrl),
        CLICKHOUSE_DATABASE: names.database,
        ...options.env,
        ...options.kernel,
      },
      label('dmp-kernel'),
    ),
  ]);
  const failed = started.find((s) => s.status === 'rejected');
  if (failed) {
    await Promise.allSettled(started.flatMap((s) => (s.status === 'fulfilled' ? [s.value.stop()] : [])));
    await rm(rulesDir, { recursive: true, force: true });
    throw failed.reason;
  }
  const [data, kernel] = started.map((s) => (s as PromiseFulfilledResult<RunningApp>).value);
  const definition = loadPackageDefinition(
    loadSync(TELEMETRY_PROTO_PATH, TELEMETRY_LOADER_OPTIONS),
  ) as unknown as TelemetryGrpcPackage;
  const client = new definition.dmp.telemetry.v1.KernelIngest(grpcUrl, credentials.createInsecure());
  return {
    kernel,
    data,
    client,
    rulesDir,
    ingest: (messages) =>
      new Promise<IngestOutcome[]>((resolve, reject) =>
        client.Ingest({ messages }, { deadline: Date.now() + 30_000 }, (error, result) =>
          error ? reject(error) : resolve(result!.outcomes),
        ),
      ),
    async stop() {
      client.close();
      await Promise.allSettled([kernel.stop(), data.stop()]);
      await rm(rulesDir, { recursive: true, force: true });
    },
  };
}

/** Registers a device as dmp-mqtt's registry does (the kernel reads it on the change notice). */
export async function registerDevice(
  redis: Redis,
  deviceId: string,
  fields: { tenantId: string; productId: string; siteId: string; tags: object },
): Promise<void> {
  await redis.hset(deviceRegistryKey(deviceId), {
    deviceId,
    status: 'enabled',
    tenantId: fields.tenantId,
    productId: fields.productId,
    siteId: fields.siteId,
    tags: JSON.stringify(fields.tags),
  });
  await redis.publish(DEVICE_CHANGED_CHANNEL, deviceId);
}

/** Deletes the Redis keys that match any of `patterns` (a run's devices and namespace). */
export async function deleteKeys(redis: Redis, ...patterns: string[]): Promise<void> {
  const keys = (await Promise.all(patterns.map((p) => redis.keys(p)))).flat();
  if (keys.length) await redis.del(...keys);
}

export interface HookReceiver {
  /** `http://127.0.0.1:<port>`: append any path. */
  url: string;
  close(): void;
}

/**
 * A local HTTP server for the kernel's webhooks (allow 127.0.0.1/32): `answer` gets each request's
 * body and headers, and may give its status (200 otherwise).
 */
export async function startHookReceiver(
  answer: (body: string, headers: IncomingHttpHeaders) => number | void,
): Promise<HookReceiver> {
  const server = createServer((request, response) => {
    let text = '';
    request.on('data', (chunk: Buffer) => (text += chunk.toString()));
    request.on('end', () => {
      response.statusCode = answer(text, request.headers) ?? 200;
      response.end();
    });
  });
  const port = await freePort();
  await new Promise<void>((resolve) => server.listen(port, '127.0.0.1', resolve));
  return { url: `http://127.0.0.1:${port}`, close: () => void server.close() };
}
