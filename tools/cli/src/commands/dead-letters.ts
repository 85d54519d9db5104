import { DEAD_LETTER_RECORD_COLUMNS, stringLiteral, type DeadLetterRecord } from '@dmp/clickhouse';
import { loadConfig, mqttSection, redisSection, rocketmqSection } from '@dmp/config';
import {
  CONSUMER_DEAD_LETTER_PROPERTIES,
  DEAD_LETTER_SOURCE_CONSUMER,
  DEAD_LETTER_SOURCE_KERNEL_OUTBOX,
  DEAD_LETTER_SOURCE_MQTT,
  DEAD_LETTERS_TABLE,
  DeadLetterProperty,
  errorMessage,
  parseDeviceTopic,
} from '@dmp/contracts';
import { RocketMqProducer } from '@dmp/messaging';
import { alarmKeys, enqueueOutbox, outboxEntryOf, type OutboxEntry } from '@dmp/rules';
import { Command, InvalidArgumentError } from 'commander';
import { Redis } from 'ioredis';
import mqtt from 'mqtt';
import { randomBytes } from 'node:crypto';
import { z } from 'zod';
import { withClickHouse } from './clickhouse';

/**
 * `dmp dead-letters list | replay` — the dead letters dmp-data stored in ClickHouse `dead_letters`.
 *
 * `replay` publishes the raw payload of dead letters from dmp-mqtt again, on their original MQTT topic,
 * with the MQTT service account (MQTT_SERVICE_USERNAME / _PASSWORD, else MQTT_USERNAME / _PASSWORD): the
 * message goes through every check again, like a device's. That is useful for refusals whose cause has
 * gone away — DMP_ERR_UNKNOWN_DEVICE after the device was registered (or enabled), DMP_ERR_RATE_LIMITED
 * after a flood, a dmp-kernel refusal after a fix. Payloads refused for what they are
 * (DMP_ERR_MALFORMED_PAYLOAD, _INVALID_PAYLOAD, _PAYLOAD_TOO_LARGE, _SPOOFED_DEVICE, _WRONG_TOPIC) or
 * duplicates are refused again, and dead-lettered again.
 *
 * A dead letter a RocketMQ consumer gave up on (source `rocketmq-consumer`: dmp-data's telemetry or alarm
 * consumer, dmp-kernel's rule consumer) is sent again to its RocketMQ topic (ROCKETMQ_*), with its body,
 * message group and properties, marked for the consumer group that gave up (`dmp_replay_for_group`): the
 * other groups of the topic, which handled it already, acknowledge it unhandled. Storage is idempotent
 * (rows keyed by message id in ReplacingMergeTree tables), so a replay stores a message once however
 * often it is replayed.
 *
 * A side effect of rules that dmp-kernel gave up on (source `dmp-kernel-outbox`) is put side effects of rules that dmp-kernel gave up on (commands,
 * webhooks, alarm events) back into the kernel's outbox in Redis (REDIS_URL, KERNEL_REDIS_NAMESPACE):
 * a running kernel carries each out again under its own id, with its attempts counted from zero.
 */
const cliSection = z
  .object({
    MQTT_SERVICE_USERNAME: z.string().optional(),
    MQTT_SERVICE_PASSWORD: z.string().optional(),
  })
  .transform((e) => ({ username: e.MQTT_SERVICE_USERNAME, password: e.MQTT_SERVICE_PASSWORD }));

/** The kernel's Redis key prefix (as dmp-kernel's own KERNEL_REDIS_NAMESPACE). */
const kernelSection = z
  .object({
    KERNEL_REDIS_NAMESPACE: z
      .string()
      .regex(/^[A-Za-z0-9_.:-]{1,64}$/)
      .default('dmp'),
  })
  .transform((e) => ({ namespace: e.KERNEL_REDIS_NAMESPACE }));

export interface DeadLetterFilter {
  id?: string;
  code?: string;
  device?: string;
  source?: string;
  /** Epoch milliseconds. */
  since?: number;
  limit: number;
  /** Oldest first (replay keeps the original order) instead of newest first. */
  oldestFirst?: boolean;
}

/** `30s`, `10m`, `2h`, `7d` ago, or an ISO 8601 time → epoch milliseconds. */
export function parseSince(value: string, now = Date.now()): number {
  const relative = /^(\d+)(s|m|h|d)$/.exec(value.trim());
  if (relative) {
    const unit = { s: 1_000, m: 60_000, h: 3_600_000, d: 86_400_000 }[relative[2] as 's' | 'm' | 'h' | 'd'];
    return now - Number(relative[1]) * unit;
  }
  const absolute = Date.parse(value);
  if (Number.isNaN(absolute))
    throw new InvalidArgumentError('use e.g. 30s, 10m, 2h, 7d, or an ISO 8601 time');
  return absolute;
}

/** The SELECT behind list and replay (ClickHouse 18.16: values quoted, no query parameters). */
export function deadLetterQuery(filter: DeadLetterFilter): string {
  const where: string[] = [];
  if (filter.id !== undefined) where.push(`message_id = ${stringLiteral(filter.id)}`);
  if (filter.code !== undefined) where.push(`error_code = ${stringLiteral(filter.code)}`);
  if (filter.device !== undefined) where.push(`device_id = ${stringLiteral(filter.device)}`);
  if (filter.source !== undefined) where.push(`source = ${stringLiteral(filter.source)}`);
  if (filter.since !== undefined) where.push(`received_at_ms >= ${Math.max(0, Math.floor(filter.since))}`);
  return `SELECT ${DEAD_LETTER_RECORD_COLUMNS.join(', ')}
FROM ${DEAD_LETTERS_TABLE} FINAL
${where.length > 0 ? `WHERE ${where.join(' AND ')}` : ''}
ORDER BY received_at_ms ${filter.oldestFirst ? 'ASC' : 'DESC'}, message_id
LIMIT ${Math.max(1, Math.floor(filter.limit))}`;
}

interface ListOptions {
  code?: string;
  device?: string;
  source?: string;
  since?: number;
  limit: number;
  json?: boolean;
}

async function list(options: ListOptions): Promise<void> {
  const rows = await withClickHouse({}, (ch) => ch.query<DeadLetterRecord>(deadLetterQuery(options)));
  if (options.json) {
    for (const row of rows) console.log(JSON.stringify(row));
    return;
  }
  for (const row of rows) {
    const when = new Date(Number(row.received_at_ms)).toISOString();
    const preview = row.payload_text
      ? JSON.stringify(row.payload_text.slice(0, 80))
      : `(${row.payload_size} bytes, binary)`;
    console.log(
      `${when}  ${row.error_code.padEnd(26)} ${row.device_id || '-'}  ${row.source_topic}  id=${row.message_id}\n` +
        `    ${row.error_message}\n    payload ${preview}`,
    );
  }
  console.error(
    `${rows.length} dead letter(s)${rows.length === options.limit ? ` (--limit ${options.limit} reached)` : ''}`,
  );
}

interface ReplayOptions {
  id?: string;
  code?: string;
  device?: string;
  source?: string;
  since?: number;
  limit: number;
  dryRun?: boolean;
}

/** Where a dead letter is replayed to, or why it is not. */
export type ReplayTarget =
  | { via: 'mqtt'; topic: string }
  | {
      via: 'rocketmq';
      topic: string;
      /** The consumer group that gave up on it: the only one to handle the replay. */
      group: string;
      messageGroup?: string;
      /** The original message's properties, marked as a replay for `group`. */
      properties: Record<string, string>;
    }
  | { via: 'none'; why: string };

/** Decides how a dead letter is replayed, from its row alone. */
export function replayTarget(row: DeadLetterRecord): ReplayTarget {
  if (row.source === DEAD_LETTER_SOURCE_MQTT)
    return parseDeviceTopic(row.source_topic)
      ? { via: 'mqtt', topic: row.source_topic }
      : // Refused for its topic (or one with escaped control characters): no device would be heard.
        { via: 'none', why: 'its topic is not a device topic' };
  if (row.source !== DEAD_LETTER_SOURCE_CONSUMER)
    return { via: 'none', why: `${row.source || 'unknown'} dead letters are refusals of their content` };
  let stored: Record<string, string>;
  try {
    stored = JSON.parse(row.properties || '{}') as Record<string, string>;
  } catch {
    return { via: 'none', why: 'its properties are not JSON' };
  }
  const group = stored[DeadLetterProperty.consumerGroup] || row.source_instance;
  if (!row.source_topic || !group) return { via: 'none', why: 'its topic or consumer group is unknown' };
  const properties = Object.fromEntries(
    Object.entries(stored).filter(([key]) => !CONSUMER_DEAD_LETTER_PROPERTIES.includes(key)),
  );
  const messageGroup = stored[DeadLetterProperty.sourceMessageGroup];
  return {
    via: 'rocketmq',
    topic: row.source_topic,
    group,
    ...(messageGroup ? { messageGroup } : {}),
    properties: {
      ...properties,
      [DeadLetterProperty.replayOf]: row.message_id,
      [DeadLetterProperty.replayForGroup]: group,
    },
  };
}

type Replayable = { row: DeadLetterRecord; target: Exclude<ReplayTarget, { via: 'none' }> };

async function replay(options: ReplayOptions): Promise<void> {
  if (options.id === undefined && options.code === undefined)
    throw new InvalidArgumentError('choose what to replay: --id ID, or --code CODE (with --since, --device)');
  const rows = await withClickHouse({}, (ch) =>
    ch.query<DeadLetterRecord>(deadLetterQuery({ ...options, oldestFirst: true })),
  );
  await replayOutbox(
    rows.filter((row) => row.source === DEAD_LETTER_SOURCE_KERNEL_OUTBOX),
    options.dryRun,
  );
  const replayable: Replayable[] = [];
  for (const row of rows) {
    if (row.source === DEAD_LETTER_SOURCE_KERNEL_OUTBOX) continue;
    const target = replayTarget(row);
    if (target.via === 'none') console.error(`skipped ${row.message_id}: ${target.why}`);
    else replayable.push({ row, target });
  }
  if (options.dryRun || replayable.length === 0) {
    for (const { row, target } of replayable)
      console.log(`would replay ${row.message_id} (${row.error_code}) to ${describe(target)}`);
    console.error(`${replayable.length} dead letter(s) to replay${options.dryRun ? ' (dry run)' : ''}`);
    return;
  }
  const viaMqtt = replayable.filter((r) => r.target.via === 'mqtt');
  const viaRocketMq = replayable.filter((r) => r.target.via === 'rocketmq');
  const failed = (await replayOverMqtt(viaMqtt)) + (await replayOverRocketMq(viaRocketMq));
  console.error(`${replayable.length - failed} dead letter(s) replayed, ${failed} failed`);
  if (failed > 0) process.exitCode = 2;
}

const describe = (target: Replayable['target']) =>
  target.via === 'mqtt' ? target.topic : `RocketMQ ${target.topic} for ${target.group}`;

/** Publishes dmp-mqtt's dead letters again with the MQTT service account; returns the failures. */
async function replayOverMqtt(replayable: Replayable[]): Promise<number> {
  if (replayable.length === 0) return 0;
  const { mqtt: broker, service } = loadConfig({ mqtt: mqttSection, service: cliSection });
  const client = await mqtt.connectAsync(broker.url, {
    protocolVersion: 5,
    clientId: `dmp-cli-replay-${randomBytes(4).toString('hex')}`,
    clean: true,
    username: service.username ?? broker.username,
    password: service.password ?? broker.password,
    reconnectPeriod: 0,
  });
  let failed = 0;
  try {
    for (const { row, target } of replayable) {
      try {
        await client.publishAsync(target.topic, Buffer.from(row.payload, 'base64'), {
          qos: 1,
          properties: {
            ...(row.content_type ? { contentType: row.content_type } : {}),
            userProperties: { [DeadLetterProperty.replayOf]: row.message_id },
          },
        });
        console.log(`replayed ${row.message_id} (${row.error_code}) to ${target.topic}`);
      } catch (error) {
        failed++;
        console.error(`replay of ${row.message_id} failed: ${errorMessage(error)}`);
      }
    }
  } finally {
    await client.endAsync();
  }
  return failed;
}

/** Sends consumers' dead letters again to their RocketMQ topics; returns the failures. */
async function replayOverRocketMq(replayable: Replayable[]): Promise<number> {
  if (replayable.length === 0) return 0;
  const { rocketmq } = loadConfig({ rocketmq: rocketmqSection });
  const topics = [...new Set(replayable.map(({ target }) => target.topic))];
  const producer = new RocketMqProducer({
    endpoints: rocketmq.endpoints,
    namespace: rocketmq.namespace,
    topics,
    serviceName: 'dmp-cli',
  });
  await producer.start();
  let failed = 0;
  try {
    for (const { row, target } of replayable) {
      if (target.via !== 'rocketmq') continue;
      try {
        await producer.send({
          topic: target.topic,
          body: Buffer.from(row.payload, 'base64'),
          ...(target.messageGroup ? { messageGroup: target.messageGroup } : {}),
          keys: row.source_message_id ? [row.source_message_id] : [],
          properties: target.properties,
        });
        console.log(`replayed ${row.message_id} (${row.error_code}) to ${describe(target)}`);
      } catch (error) {
        failed++;
        console.error(`replay of ${row.message_id} failed: ${errorMessage(error)}`);
      }
    }
  } finally {
    await producer.stop();
  }
  return failed;
}

/** The side effects the rows carry, back into dmp-kernel's outbox: due at once, attempts from zero. */
async function replayOutbox(rows: readonly DeadLetterRecord[], dryRun = false): Promise<void> {
  if (rows.length === 0) return;
  const entries: { row: DeadLetterRecord; entry: OutboxEntry }[] = [];
  for (const row of rows) {
    try {
      entries.push({ row, entry: outboxEntryOf(Buffer.from(row.payload, 'base64')) });
    } catch (error) {
      console.error(`${row.message_id} skipped: ${(error as Error).message}`);
    }
  }
  for (const { row, entry } of entries)
    console.log(
      `${dryRun ? 'would put' : 'put'} ${entry.id} (${row.error_code}) back into the kernel's outbox`,
    );
  if (dryRun || entries.length === 0) {
    console.error(`${entries.length} dead letter(s) to replay${dryRun ? ' (dry run)' : ''}`);
    return;
  }
  const { redis: connection, kernel } = loadConfig({ redis: redisSection, kernel: kernelSection });
  const redis = new Redis(connection.url, { lazyConnect: true, maxRetriesPerRequest: 3 });
  try {
    await redis.connect();
    await enqueueOutbox(
      redis,
      alarmKeys(kernel.namespace),
      entries.map((e) => e.entry),
      Date.now(),
    );
  } finally {
    redis.disconnect();
  }
  console.error(`${entries.length} dead letter(s) put back into the outbox of ${kernel.namespace}`);
}

const positiveInt = (value: string) => {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1) throw new InvalidArgumentError('must be a positive integer');
  return n;
};

export function registerDeadLettersCommand(program: Command): void {
  const deadLetters = program
    .command('dead-letters')
    .description('refused and unprocessable messages, from ClickHouse dead_letters (CLICKHOUSE_*)');
  deadLetters
    .command('list')
    .description('newest first')
    .option('--code <code>', 'only this DMP_ERR_* code')
    .option('--device <deviceId>', 'only this device')
    .option(
      '--source <source>',
      `only from this source (${DEAD_LETTER_SOURCE_MQTT}, ${DEAD_LETTER_SOURCE_CONSUMER}, ${DEAD_LETTER_SOURCE_KERNEL_OUTBOX})`,
    )
    .option('--since <when>', 'only since: 30s, 10m, 2h, 7d or an ISO time', (v) => parseSince(v))
    .option('--limit <n>', 'at most this many', positiveInt, 50)
    .option('--json', 'one JSON object per line, with the base64 payload')
    .action((options: ListOptions) => list(options));
  deadLetters
    .command('replay')
    .description(
      "send again: dmp-mqtt's refusals to their MQTT topic (MQTT service account), consumers' to their RocketMQ topic, dmp-kernel's side effects into its outbox (REDIS_URL, KERNEL_REDIS_NAMESPACE)",
    )
    .option(
      '--id <id>',
      'the dead letter with this id, as listed (the RocketMQ message id; <id>.<n> for the n-th of a batch)',
    )
    .option('--code <code>', 'dead letters with this DMP_ERR_* code')
    .option('--device <deviceId>', 'only this device')
    .option(
      '--source <source>',
      `only from this source (${DEAD_LETTER_SOURCE_MQTT}, ${DEAD_LETTER_SOURCE_CONSUMER}, ${DEAD_LETTER_SOURCE_KERNEL_OUTBOX})`,
    )
    .option('--since <when>', 'only since: 30s, 10m, 2h, 7d or an ISO time', (v) => parseSince(v))
    .option('--limit <n>', 'at most this many, oldest first', positiveInt, 1_000)
    .option('--dry-run', 'show what would be replayed')
    .action((options: ReplayOptions) => replay(options));
}
