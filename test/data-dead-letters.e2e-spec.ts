/**
 * Nothing acknowledged disappears through a long storage outage, against the real local stack
 * (ClickHouse 18.16 in an own database `dmp_test_dlq_<random>`, dropped at the end; RocketMQ topics and
 * groups `dmp_dlq_test_*` from scripts/stack/rocketmq-{topics,groups}.txt). The outage is made without
 * stopping the shared ClickHouse: dmp-data's tables are renamed away (inserts fail with UNKNOWN_TABLE,
 * retryable), then back. dmp-data runs with a delivery limit of 2 so the limit is reached in seconds.
 */
import { ClickHouseRepository, type DeadLetterRecord } from '@dmp/clickhouse';
import type { NormalizedTelemetry } from '@dmp/contracts';
import { RocketMqProducer } from '@dmp/messaging';
import {
  chainTopicTypes,
  createRocketmqResources,
  dropDatabaseInBackground,
  readMetric,
  REPO_ROOT,
  silentNestLogger,
  stack,
  startApp,
  waitFor,
  type RunningApp,
} from '@dmp/testing';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';

const execFileAsync = promisify(execFile);
const run = randomBytes(4).toString('hex');
const database = `dmp_test_dlq_${run}`;
const topics = {
  event: 'dmp_dlq_test_event',
  snapshot: 'dmp_dlq_test_snapshot',
  alarm: 'dmp_dlq_test_alarm',
  deadLetter: 'dmp_dlq_test_dead_letter',
};
const groups = {
  data: 'dmp_dlq_test_data',
  alarm: 'dmp_dlq_test_alarm',
  deadLetter: 'dmp_dlq_test_dead_letter',
};

describe('dmp-data through a storage outage longer than its delivery limit', () => {
  const repository = new ClickHouseRepository({ ...stack.clickhouse, database, requestTimeoutMs: 60_000 });
  const producer = new RocketMqProducer({
    endpoints: stack.rocketmq.endpoints,
    namespace: stack.rocketmq.namespace,
    topics: [topics.event],
    serviceName: 'dlq-e2e',
    logger: silentNestLogger,
  });
  let app: RunningApp | undefined;

  const metric = (topic: string, outcome: string) =>
    readMetric(app!.baseUrl, 'dmp_rocketmq_settled_total', { topic, outcome });
  const rename = (from: string, to: string) =>
    repository.command(`RENAME TABLE ${database}.${from} TO ${database}.${to}`);
  const stored = async (deviceId: string) => {
    const [row] = await repository.query<{ rows: string; ids: string }>(
      `SELECT count() AS rows, uniqExact(message_id) AS ids FROM telemetry_raw FINAL WHERE device_id = '${deviceId}'`,
    );
    return { rows: Number(row.rows), ids: Number(row.ids) };
  };
  const cli = (...args: string[]) =>
    execFileAsync(process.execPath, [join(REPO_ROOT, 'dist/tools/cli/src/main.js'), ...args], {
      env: { ...process.env, CLICKHOUSE_DATABASE: database },
    });

  before(async () => {
    await createRocketmqResources({
      topics: chainTopicTypes(topics),
      // The dead-letter group waits for ClickHouse as long as it takes: no broker retry limit in reach.
      groups: {
        [groups.data]: 'orderly',
        [groups.alarm]: 'orderly',
        [groups.deadLetter]: { orderly: false, retryMaxTimes: 100_000 },
      },
    });
    await producer.start();
    app = await startApp(
      'dmp-data',
      {
        CLICKHOUSE_DATABASE: database,
        DATA_CONSUMER_GROUP: groups.data,
        ALARM_CONSUMER_GROUP: groups.alarm,
        DEAD_LETTER_CONSUMER_GROUP: groups.deadLetter,
        ROCKETMQ_TOPIC_EVENT: topics.event,
        ROCKETMQ_TOPIC_SNAPSHOT: topics.snapshot,
        ROCKETMQ_TOPIC_ALARM: topics.alarm,
        ROCKETMQ_TOPIC_DEAD_LETTER: topics.deadLetter,
        DATA_MAX_DELIVERY_ATTEMPTS: '2',
        DATA_BATCH_MAX_WAIT_MS: '100',
        DATA_INSERT_RETRY_MAX_MS: '500',
        DEAD_LETTER_MAX_RETRY_DELAY_MS: '2000',
        DATA_AGGREGATION_ENABLED: 'false',
        LOG_LEVEL: 'info',
      },
      { label: `dmp-data-dlq-e2e-${run}` },
    );
  });

  after(async () => {
    // Nothing is in flight any more, and the graceful stop is not what this test is about: SIGKILL
    // spares dmp-data's drain (≈ 15 s: its four consumers wait out their long polls in turn).
    await app?.stop('SIGKILL');
    await producer.stop();
    dropDatabaseInBackground(database);
    await repository.close();
  });

  it('dead-letters what it cannot store, keeps the dead letter until it is stored, and a replay stores it once', async () => {
    assert.ok(app, 'dmp-data runs');
    const acksBefore = await metric(topics.deadLetter, 'ack');
    await rename('telemetry_raw', 'telemetry_raw_away');
    await rename('dead_letters', 'dead_letters_away');

    const deviceId = `dlq-${run}`;
    const now = Date.now();
    const message: NormalizedTelemetry = {
      deviceId,
      messageId: `${deviceId}-m1`,
      kind: 'telemetry',
      ts: now,
      seq: 1,
      metrics: { level: 7 },
      receivedAt: now + 5,
      tenantId: 'tenant-e2e',
      productId: 'product-e2e',
      siteId: 'site-1',
    };
    const { messageId } = await producer.send({
      topic: topics.event,
      body: Buffer.from(JSON.stringify(message)),
      messageGroup: deviceId,
      keys: [message.messageId],
      tag: 'telemetry',
    });

    // DATA_MAX_DELIVERY_ATTEMPTS (2) deliveries fail: the message goes to the dead-letter topic…
    await waitFor(
      'the message dead-lettered at the delivery limit',
      async () => (await metric(topics.event, 'dead_letter')) >= 1,
      {
        timeoutMs: 60_000,
      },
    );
    // …whose consumer cannot store it either: it retries instead of dropping it.
    await waitFor(
      'the dead letter redelivered twice',
      async () => (await metric(topics.deadLetter, 'retry')) >= 2,
      {
        timeoutMs: 120_000,
        intervalMs: 1_000,
      },
    );
    assert.equal(
      await metric(topics.deadLetter, 'ack'),
      acksBefore,
      'no dead letter acknowledged while unstored',
    );

    // dead_letters is back: the dead letter is stored and listed.
    await rename('dead_letters_away', 'dead_letters');
    const row = await waitFor(
      '`dmp dead-letters list` showing the dead letter',
      async () => {
        const { stdout } = await cli(
          'dead-letters',
          'list',
          '--source',
          'rocketmq-consumer',
          '--device',
          deviceId,
          '--json',
        );
        return stdout
          .split('\n')
          .filter(Boolean)
          .map((line) => JSON.parse(line) as DeadLetterRecord)
          .find((r) => r.source_message_id === messageId);
      },
      { timeoutMs: 90_000, intervalMs: 1_000 },
    );
    assert.equal(row.error_code, 'DMP_ERR_STORAGE_UNAVAILABLE');
    assert.equal(row.source_topic, topics.event);
    assert.equal(row.source_instance, groups.data);
    assert.equal(
      (JSON.parse(row.properties) as Record<string, string>).dmp_dead_letter_reason,
      'max_delivery_attempts',
    );

    // telemetry_raw is back: nothing of the message is there until it is replayed.
    await rename('telemetry_raw_away', 'telemetry_raw');
    assert.deepEqual(await stored(deviceId), { rows: 0, ids: 0 });
    const replayed = await cli('dead-letters', 'replay', '--id', row.message_id);
    assert.match(
      replayed.stdout,
      new RegExp(`replayed ${row.message_id} .* to RocketMQ ${topics.event} for ${groups.data}`),
    );
    await waitFor('the replayed message stored', async () => (await stored(deviceId)).ids === 1, {
      timeoutMs: 60_000,
      intervalMs: 500,
    });

    // Replayed again, it is handled again and still stored once.
    const storedBefore = await readMetric(app.baseUrl, 'dmp_data_messages_total', { outcome: 'stored' });
    await cli('dead-letters', 'replay', '--id', row.message_id);
    await waitFor(
      'the second replay handled',
      async () =>
        (await readMetric(app!.baseUrl, 'dmp_data_messages_total', { outcome: 'stored' })) > storedBefore,
      { timeoutMs: 60_000, intervalMs: 500 },
    );
    assert.deepEqual(await stored(deviceId), { rows: 1, ids: 1 });
    const rows = await repository.query<{ metric_names: string[]; metric_values: number[] }>(
      `SELECT metric_names, metric_values FROM telemetry_raw FINAL WHERE device_id = '${deviceId}'`,
    );
    assert.deepEqual(rows, [{ metric_names: ['level'], metric_values: [7] }]);
  });
});
