import {
  ClickHouseRepository,
  DEAD_LETTER_RECORD_COLUMNS,
  stringLiteral,
  type DeadLetterRecord,
} from '@dmp/clickhouse';
import { clickhouseSection, loadConfig, mqttSection, redisSection } from '@dmp/config';
import {
  DEAD_LETTER_SOURCE_KERNEL_OUTBOX,
  DEAD_LETTER_SOURCE_MQTT,
  DEAD_LETTERS_TABLE,
  parseDeviceTopic,
} from '@dmp/contracts';
import { Command, InvalidArgumentError } from 'commander';
import { Redis } from 'ioredis';
import mqtt from 'mqtt';
import { randomBytes } from 'node:crypto';
import { z } from 'zod';
import {
  alarmKeys,
  enqueueOutbox,
  type OutboxEntry,
} from '../../../../apps/dmp-kernel/src/alarms/alarm.store';
import { outboxEntryOf } from '../../../../apps/dmp-kernel/src/alarms/outbox-policy';

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
 * `replay --source dmp-kernel-outbox` puts side effects of rules that dmp-kernel gave up on (commands,
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

async function withClickHouse<T>(run: (clickhouse: ClickHouseRepository) => Promise<T>): Promise<T> {
  const { clickhouse } = loadConfig({ clickhouse: clickhouseSection });
  const repository = new ClickHouseRepository(clickhouse);
  try {
    return await run(repository);
  } finally {
    await repository.close();
  }
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
  const rows = await withClickHouse((ch) => ch.query<DeadLetterRecord>(deadLetterQuery(options)));
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
  since?: number;
  limit: number;
  dryRun?: boolean;
  source: string;
}

const REPLAYABLE_SOURCES = [DEAD_LETTER_SOURCE_MQTT, DEAD_LETTER_SOURCE_KERNEL_OUTBOX];

async function replay(options: ReplayOptions): Promise<void> {
  if (options.id === undefined && options.code === undefined)
    throw new InvalidArgumentError('choose what to replay: --id ID, or --code CODE (with --since, --device)');
  if (!REPLAYABLE_SOURCES.includes(options.source))
    throw new InvalidArgumentError(`--source: one of ${REPLAYABLE_SOURCES.join(', ')}`);
  const rows = await withClickHouse((ch) =>
    ch.query<DeadLetterRecord>(deadLetterQuery({ ...options, oldestFirst: true })),
  );
  if (options.source === DEAD_LETTER_SOURCE_KERNEL_OUTBOX) return replayOutbox(rows, options.dryRun);
  // A topic that is not a device topic was refused for that (or carried escaped control characters).
  const replayable = rows.filter((row) => parseDeviceTopic(row.source_topic));
  const skipped = rows.length - replayable.length;
  if (skipped > 0) console.error(`${skipped} dead letter(s) skipped: their topic is not a device topic`);
  if (options.dryRun || replayable.length === 0) {
    for (const row of replayable)
      console.log(`would replay ${row.message_id} (${row.error_code}) to ${row.source_topic}`);
    console.error(`${replayable.length} dead letter(s) to replay${options.dryRun ? ' (dry run)' : ''}`);
    return;
  }

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
    for (const row of replayable) {
      try {
        await client.publishAsync(row.source_topic, Buffer.from(row.payload, 'base64'), {
          qos: 1,
          properties: {
            ...(row.content_type ? { contentType: row.content_type } : {}),
            userProperties: { dmp_replay_of: row.message_id },
          },
        });
        console.log(`replayed ${row.message_id} (${row.error_code}) to ${row.source_topic}`);
      } catch (error) {
        failed++;
        console.error(`replay of ${row.message_id} failed: ${(error as Error).message}`);
      }
    }
  } finally {
    await client.endAsync();
  }
  console.error(`${replayable.length - failed} dead letter(s) replayed, ${failed} failed`);
  if (failed > 0) process.exitCode = 2;
}

/** The side effects the rows carry, back into dmp-kernel's outbox: due at once, attempts from zero. */
async function replayOutbox(rows: readonly DeadLetterRecord[], dryRun = false): Promise<void> {
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
    .option('--source <source>', 'only from this source (dmp-mqtt, rocketmq-consumer)')
    .option('--since <when>', 'only since: 30s, 10m, 2h, 7d or an ISO time', (v) => parseSince(v))
    .option('--limit <n>', 'at most this many', positiveInt, 50)
    .option('--json', 'one JSON object per line, with the base64 payload')
    .action((options: ListOptions) => list(options));
  deadLetters
    .command('replay')
    .description('publish the raw payload again on its original MQTT topic, with the MQTT service account')
    .option(
      '--id <id>',
      'the dead letter with this id, as listed (the RocketMQ message id; <id>.<n> for the n-th of a batch)',
    )
    .option('--code <code>', 'dead letters with this DMP_ERR_* code')
    .option('--device <deviceId>', 'only this device')
    .option('--since <when>', 'only since: 30s, 10m, 2h, 7d or an ISO time', (v) => parseSince(v))
    .option('--limit <n>', 'at most this many, oldest first', positiveInt, 1_000)
    .option(
      '--source <source>',
      `${DEAD_LETTER_SOURCE_MQTT}: publish on the MQTT topic; ${DEAD_LETTER_SOURCE_KERNEL_OUTBOX}: back into dmp-kernel's outbox (REDIS_URL, KERNEL_REDIS_NAMESPACE)`,
      DEAD_LETTER_SOURCE_MQTT,
    )
    .option('--dry-run', 'show what would be replayed')
    .action((options: ReplayOptions) => replay(options));
}
