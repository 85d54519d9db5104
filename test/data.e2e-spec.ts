/**
 * dmp-data end to end, against the real local stack: ClickHouse 18.16 (own database
 * `dmp_test_data_<random>`, dropped at the end) and RocketMQ (own topics `dmp_data_test_*` and consumer
 * groups, listed in scripts/stack/rocketmq-{topics,groups}.txt). dmp-data runs as a real
 * process; it reaches ClickHouse through a TCP relay in this test so the test can take the
 * server away mid-stream.
 */
import {
  applyMigrations,
  applyRetention,
  clickhouseErrorCode,
  ClickHouseRepository,
  isDataError,
  migrations,
  stringList,
  Tables,
  toTelemetryRows,
} from '@dmp/clickhouse';
import { errorMessage, StorageErrorCode, type DmpError, type NormalizedTelemetry } from '@dmp/contracts';
import { RocketMqProducer } from '@dmp/messaging';
import {
  chainTopicTypes,
  createRocketmqResources,
  dropDatabaseInBackground,
  freePort,
  getJaegerTrace,
  metricSum,
  readMetric,
  silentClientLogger,
  silentNestLogger,
  stack,
  startApp,
  TEST_LOG_DIR,
  waitFor,
  within,
  type RunningApp,
  byMinuteKey,
  readMinuteAggregates,
  recomputedFromRaw,
  roundedSum,
  type MinuteAggregate,
} from '@dmp/testing';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createServer, connect, type Server, type Socket } from 'node:net';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { SimpleConsumer, type MessageView } from 'rocketmq-client-nodejs';
import { recomputeSql } from '../apps/dmp-data/src/aggregation/minute-aggregation';
import { BatchWriter } from '../apps/dmp-data/src/storage/batch-writer';

const run = randomBytes(4).toString('hex');
const database = `dmp_test_data_${run}`;
const CONSUMER_GROUP = 'dmp_data_test';
const DLQ_GROUP = 'dmp_data_test_dlq';
/** Own topics: the default ones may hold other runs' backlog. */
const topics = {
  event: 'dmp_data_test_event',
  snapshot: 'dmp_data_test_snapshot',
  alarm: 'dmp_data_test_alarm',
  deadLetter: 'dmp_data_test_dead_letter',
};

/** A TCP relay to ClickHouse that the test can switch off (connections refused and cut) and on. */
class Relay {
  private server?: Server;
  private readonly sockets = new Set<Socket>();
  constructor(
    readonly port: number,
    private readonly target: { host: string; port: number },
  ) {}

  async up(): Promise<void> {
    this.server = createServer((client) => {
      const upstream = connect(this.target.port, this.target.host);
      for (const socket of [client, upstream]) {
        this.sockets.add(socket);
        socket.on('close', () => this.sockets.delete(socket));
        socket.on('error', () => socket.destroy());
      }
      client.pipe(upstream).pipe(client);
      client.on('close', () => upstream.destroy());
      upstream.on('close', () => client.destroy());
    });
    await new Promise<void>((resolve) => this.server!.listen(this.port, '127.0.0.1', resolve));
  }

  async down(): Promise<void> {
    const server = this.server;
    this.server = undefined;
    for (const socket of this.sockets) socket.destroy();
    if (server) await new Promise<void>((resolve) => server.close(() => resolve()));
  }
}

type Metrics = NormalizedTelemetry['metrics'];

function telemetry(deviceId: string, i: number, base: number, metrics: Metrics): NormalizedTelemetry {
  return {
    deviceId,
    messageId: `${deviceId}-m${i}`,
    kind: i % 3 === 0 ? 'event' : 'telemetry',
    ts: base + i * 1_000,
    seq: i,
    metrics,
    receivedAt: base + i * 1_000 + 5,
    tenantId: 'tenant-e2e',
    productId: 'product-e2e',
    siteId: `site-${deviceId.slice(-1)}`,
  };
}

/** The Unix second a millisecond timestamp's minute starts at (telemetry_1m's `minute`). */
const minuteOfMs = (ms: number) => Math.floor(ms / 60_000) * 60;

/** What telemetry_1m must hold for these (distinct) messages: numeric and boolean metrics per minute. */
function expectedAggregates(messages: NormalizedTelemetry[]): MinuteAggregate[] {
  const groups = new Map<string, { m: NormalizedTelemetry; value: number }[]>();
  for (const m of messages)
    for (const [metric, value] of Object.entries(m.metrics)) {
      if (typeof value === 'string') continue;
      const key = JSON.stringify([m.deviceId, metric, minuteOfMs(m.ts)]);
      groups.set(key, [...(groups.get(key) ?? []), { m, value: Number(value) }]);
    }
  const order = (a: { m: NormalizedTelemetry }, b: { m: NormalizedTelemetry }) =>
    a.m.ts - b.m.ts || (a.m.messageId < b.m.messageId ? -1 : 1);
  return [...groups.entries()]
    .map(([key, samples]) => {
      const [device_id, metric, minute] = JSON.parse(key) as [string, string, number];
      const sorted = [...samples].sort(order);
      const values = sorted.map((s) => s.value);
      return {
        device_id,
        metric,
        minute,
        samples: values.length,
        value_sum: values.reduce((a, b) => a + b, 0),
        value_min: Math.min(...values),
        value_max: Math.max(...values),
        value_first: values[0],
        value_last: values.at(-1)!,
      };
    })
    .map(roundedSum)
    .sort(byMinuteKey);
}

describe('dmp-data', () => {
  // A long request timeout: on a busy 2-core machine a read can outlast the default 30 s.
  const repository = new ClickHouseRepository({ ...stack.clickhouse, database, requestTimeoutMs: 180_000 });
  const producer = new RocketMqProducer({
    endpoints: stack.rocketmq.endpoints,
    namespace: stack.rocketmq.namespace,
    topics: [topics.event, topics.snapshot],
    serviceName: 'data-e2e',
    logger: silentNestLogger,
  });
  const deadLetters = new SimpleConsumer({
    endpoints: stack.rocketmq.endpoints,
    namespace: stack.rocketmq.namespace,
    consumerGroup: DLQ_GROUP,
    subscriptions: new Map([[topics.deadLetter, '*']]),
    awaitDuration: 5_000,
    logger: silentClientLogger,
  });
  let relay: Relay;
  let app: RunningApp | undefined;
  let appEnv: Record<string, string>;
  const sent: NormalizedTelemetry[] = [];

  const send = (
    message: NormalizedTelemetry,
    body = Buffer.from(JSON.stringify(message)),
    traceparent?: string,
  ) =>
    producer.send({
      topic: message.kind === 'snapshot' ? topics.snapshot : topics.event,
      body,
      messageGroup: message.deviceId,
      keys: [message.messageId],
      tag: message.kind,
      ...(traceparent ? { properties: { traceparent } } : {}),
    });

  /** Sends each device's messages in order (FIFO per device), devices concurrently. */
  async function sendAll(messages: NormalizedTelemetry[]): Promise<void> {
    const byDevice = new Map<string, NormalizedTelemetry[]>();
    for (const message of messages)
      byDevice.set(message.deviceId, [...(byDevice.get(message.deviceId) ?? []), message]);
    await Promise.all(
      [...byDevice.values()].map(async (list) => {
        for (const message of list) await send(message);
      }),
    );
  }

  /** telemetry_1m (FINAL) rows of these devices, in expectedAggregates' order. */
  const aggregates = (devices: Iterable<string>) =>
    readMinuteAggregates(repository, 'telemetry_1m FINAL', `device_id IN (${stringList(devices)})`);
  /** The same aggregates computed straight from deduplicated raw rows. */
  const fromRaw = (devices: Iterable<string>) => {
    const where = `device_id IN (${stringList(devices)})`;
    return readMinuteAggregates(repository, recomputedFromRaw(where), where);
  };
  /**
   * Waits until telemetry_1m of these devices holds exactly `expected`; on a timeout, says what it
   * held, what was still pending and what the running aggregator had counted.
   */
  const aggregatesBecome = async (what: string, devices: Iterable<string>, expected: MinuteAggregate[]) => {
    try {
      await waitFor(
        what,
        async () => JSON.stringify(await aggregates(devices)) === JSON.stringify(expected),
        { timeoutMs: 30_000, intervalMs: 300 },
      );
    } catch (error) {
      const metrics = app ? await (await fetch(`${app.baseUrl}/metrics`)).text() : '';
      const counted = ['minutes_total', 'run_seconds_count', 'errors_total']
        .map((name) => `${name} ${metricSum(metrics, `dmp_data_aggregation_${name}`)}`)
        .join(', ');
      throw new Error(
        `${errorMessage(error)} (then: ${(await aggregates(devices)).length}/${expected.length} row(s), ` +
          `${await pendingMarks(devices)} minute(s) pending; aggregator ${counted})`,
        { cause: error },
      );
    }
  };
  let storedDevices: string[] = [];
  let storedMessages: NormalizedTelemetry[] = [];

  const rawCount = async (devices: Iterable<string>) => {
    const [row] = await repository.query<{ rows: string; ids: string }>(
      `SELECT count() AS rows, uniqExact(message_id) AS ids FROM telemetry_raw FINAL WHERE device_id IN (${stringList(devices)})`,
    );
    return { rows: Number(row.rows), ids: Number(row.ids) };
  };

  /**
   * Distinct (device, minute)s of these devices' numeric rows with a mark at or after the aggregator's
   * cursor: their own, or their whole minute's.
   */
  const pendingMarks = async (devices: Iterable<string>) => {
    const pending = `FROM telemetry_1m_marks WHERE marked_at >= (SELECT max(marks_until) FROM telemetry_1m_progress)`;
    const [row] = await repository.query<{ n: string }>(
      `SELECT count() AS n FROM
       (SELECT DISTINCT device_id, toStartOfMinute(ts) AS minute FROM telemetry_raw
        WHERE device_id IN (${stringList(devices)}) AND notEmpty(metric_names))
       WHERE (device_id, minute) IN (SELECT device_id, minute ${pending})
          OR minute IN (SELECT minute ${pending} AND device_id = '')`,
    );
    return Number(row.n);
  };

  before(async () => {
    await createRocketmqResources({
      topics: chainTopicTypes(topics),
      groups: {
        [CONSUMER_GROUP]: 'orderly',
        dmp_data_alarm_test: 'orderly',
        dmp_data_dead_letter_test: 'concurrently',
        [DLQ_GROUP]: 'concurrently',
      },
    });
    relay = new Relay(await freePort(), {
      host: new URL(stack.clickhouse.url).hostname,
      port: Number(new URL(stack.clickhouse.url).port),
    });
    await relay.up();
    await Promise.all([
      producer.start(),
      within(30_000, 'dead-letter consumer start-up', deadLetters.startup()),
    ]);
    // A new group starts at the end of the topic: receive once so its offset exists before we dead-letter.
    for (const view of await within(20_000, 'dead-letter receive', deadLetters.receive(32, 10_000)))
      await deadLetters.ack(view);
    appEnv = {
      CLICKHOUSE_URL: `http://127.0.0.1:${relay.port}`,
      CLICKHOUSE_DATABASE: database,
      DATA_CONSUMER_GROUP: CONSUMER_GROUP,
      ALARM_CONSUMER_GROUP: 'dmp_data_alarm_test',
      DEAD_LETTER_CONSUMER_GROUP: 'dmp_data_dead_letter_test',
      ROCKETMQ_TOPIC_EVENT: topics.event,
      ROCKETMQ_TOPIC_SNAPSHOT: topics.snapshot,
      ROCKETMQ_TOPIC_ALARM: topics.alarm,
      ROCKETMQ_TOPIC_DEAD_LETTER: topics.deadLetter,
      DATA_BATCH_MAX_WAIT_MS: '100',
      DATA_INSERT_RETRY_MAX_MS: '3000',
      DATA_AGGREGATION_LATENESS_MS: '0',
      DATA_AGGREGATION_INTERVAL_MS: '300',
      // A process killed with -9 held the aggregation lease: the next one aggregates after this long.
      DATA_AGGREGATION_LEASE_MS: '2000',
      // The aggregator reads marks once they are older than this plus 1 s (30 s by default).
      CLICKHOUSE_REQUEST_TIMEOUT_MS: '8000',
      // Several recomputation statements per pass over the pending minutes.
      DATA_AGGREGATION_MAX_KEYS: '7',
      DATA_CLEAN_METRIC_RANGES: '{"hum":[0,100]}',
      LOG_LEVEL: 'info',
    };
  });

  after(async () => {
    // Nothing is in flight any more, and the graceful stop is tested above ('drains on SIGTERM…'):
    // SIGKILL spares dmp-data's drain (≈ 15 s: its four consumers wait out their long polls in turn).
    await app?.stop('SIGKILL');
    await Promise.allSettled([producer.stop(), deadLetters.shutdown(), relay.down()]);
    dropDatabaseInBackground(database);
    await repository.close();
  });

  it('applies its migrations idempotently, creating the database', async () => {
    const first = await applyMigrations(repository, migrations);
    assert.deepEqual(first.applied, [
      '001_telemetry_raw',
      '002_telemetry_latest',
      '003_telemetry_1m',
      '004_dead_letters',
      '005_alarms',
      '006_telemetry_1m_marks',
      '007_telemetry_1m_source',
      '010_alarm_explanations',
      '011_commands',
      '012_telemetry_corrections',
      '013_alarm_generations',
    ]);
    assert.equal(first.server, '18.16.1');
    // Newer types wait for a newer server (test/clickhouse-current.e2e-spec.ts runs them on 26.x).
    assert.deepEqual(first.waiting, ['008_low_cardinality', '009_millisecond_times']);
    const second = await applyMigrations(repository, migrations);
    assert.deepEqual(second.applied, []);
    assert.equal(second.alreadyApplied, first.applied.length);

    const tables = await repository.query<{ name: string; engine: string; sorting_key?: string }>(
      `SELECT name, engine FROM system.tables WHERE database = '${database}' ORDER BY name`,
    );
    for (const [name, engine = 'ReplacingMergeTree'] of [
      ['schema_migrations'],
      ['telemetry_1m'],
      ['telemetry_1m_dirty'],
      ['telemetry_1m_marks', 'MergeTree'],
      ['telemetry_1m_progress'],
      ['telemetry_1m_source'],
      ['telemetry_1m_source_mv', 'MaterializedView'],
      ['telemetry_latest'],
      ['telemetry_raw'],
      ['dead_letters'],
      ['alarms'],
      ['alarm_explanations'],
      ['commands'],
      ['command_events'],
      ['telemetry_corrections'],
      ['alarm_generations'],
      ['alarm_generation_alarms'],
    ])
      assert.deepEqual(
        tables.find((table) => table.name === name),
        { name, engine },
        `table ${name}`,
      );
    const [recorded] = await repository.query<{ n: string }>(
      'SELECT count() AS n FROM schema_migrations FINAL',
    );
    assert.equal(Number(recorded.n), first.applied.length);
  });

  it('carries the pending marks of telemetry_1m_dirty over to the mark log, not the done ones', async () => {
    const old = repository.forDatabase(`${database}_upgrade`);
    try {
      await applyMigrations(old, migrations.slice(0, 5));
      // Minute 120 was recomputed after its mark, minute 180 marked again after its recomputation.
      await old.insertRows('telemetry_1m_dirty', [
        { device_id: 'a', minute: 60, pending: 1, ver: 11 },
        { device_id: 'a', minute: 120, pending: 1, ver: 11 },
        { device_id: 'a', minute: 120, pending: 0, ver: 12 },
        { device_id: 'b', minute: 180, pending: 0, ver: 12 },
        { device_id: 'b', minute: 180, pending: 1, ver: 13 },
      ]);
      assert.deepEqual((await applyMigrations(old, migrations.slice(0, 6))).applied, [
        '006_telemetry_1m_marks',
      ]);
      assert.deepEqual(
        await old.query(
          'SELECT device_id, toUInt32(minute) AS minute FROM telemetry_1m_marks ORDER BY device_id, minute',
        ),
        [
          { device_id: 'a', minute: 60 },
          { device_id: 'b', minute: 180 },
        ],
      );
    } finally {
      await old.command(`DROP DATABASE IF EXISTS ${database}_upgrade`);
      await old.close();
    }
  });

  it("copies the last three days' numeric raw rows to telemetry_1m_source, then every new one", async () => {
    const old = repository.forDatabase(`${database}_upgrade7`);
    const row = (deviceId: string, ts: number, metrics: Metrics) =>
      toTelemetryRows(telemetry(deviceId, 0, ts, metrics)).raw;
    try {
      await applyMigrations(old, migrations.slice(0, 6));
      const now = Date.now();
      await old.insertRows(Tables.raw, [
        row('recent', now - 86_400_000, { power: 1 }),
        row('text-only', now, { status: 'ok' }),
        row('too-old', now - 4 * 86_400_000, { power: 2 }),
      ]);
      assert.deepEqual((await applyMigrations(old, migrations)).applied, [
        '007_telemetry_1m_source',
        '010_alarm_explanations',
        '011_commands',
        '012_telemetry_corrections',
        '013_alarm_generations',
      ]);
      await old.insertRows(Tables.raw, [row('after', now, { power: 3, on: true })]);
      assert.deepEqual(
        await old.query(
          `SELECT device_id, toUInt32(minute) AS minute, metric_names, metric_values
           FROM ${Tables.minuteSource} ORDER BY device_id`,
        ),
        [
          {
            device_id: 'after',
            minute: minuteOfMs(now),
            metric_names: ['power', 'on'],
            metric_values: [3, 1],
          },
          {
            device_id: 'recent',
            minute: minuteOfMs(now - 86_400_000),
            metric_names: ['power'],
            metric_values: [1],
          },
        ],
      );
    } finally {
      await old.command(`DROP DATABASE IF EXISTS ${database}_upgrade7`);
      await old.close();
    }
  });

  it('isolates rows ClickHouse refuses: the batch is split, the rest is stored, the culprit rejected for good', async () => {
    const deviceId = `e2e-${run}-split`;
    const rows = Array.from({ length: 7 }, (_, i) =>
      toTelemetryRows(telemetry(deviceId, i, Date.now(), { v: i })),
    ).map((r) => r.raw);
    // A negative UInt64 is what a broken producer could send: ClickHouse answers Code 72.
    (rows[4] as unknown as { ts_ms: number }).ts_ms = -1;
    const writer = new BatchWriter<(typeof rows)[number]>(
      (items) => repository.insertRows(Tables.raw, items),
      { maxRows: 100, maxWaitMs: 10, maxQueueRows: 100, retryBaseMs: 10, retryMaxMs: 100 },
      { isItemError: isDataError },
    );
    const results = await Promise.allSettled(rows.map((row) => writer.write(row)));
    await writer.close();
    assert.deepEqual(
      results.map((r) => r.status),
      ['fulfilled', 'fulfilled', 'fulfilled', 'fulfilled', 'rejected', 'fulfilled', 'fulfilled'],
    );
    const reason = (results[4] as PromiseRejectedResult).reason as DmpError;
    assert.equal(reason.code, StorageErrorCode.Unstorable);
    assert.equal(reason.retryable, false);
    assert.equal(clickhouseErrorCode(reason.cause), 72);
    assert.deepEqual(await rawCount([deviceId]), { rows: 6, ids: 6 });
  });

  it('applies retention on 18.16 by dropping partitions entirely older than the cutoff', async () => {
    const deviceId = `e2e-${run}-retention`;
    const old = Date.UTC(2020, 0, 15);
    const rows = [old, Date.UTC(2020, 1, 20), Date.now()].map(
      (ts, i) => toTelemetryRows({ ...telemetry(deviceId, i, 0, { v: i }), ts }).raw,
    );
    await repository.insertRows(Tables.raw, rows);
    const result = await applyRetention(repository, { table: Tables.raw, days: 365 });
    assert.equal(result.method, 'drop_partitions');
    assert.deepEqual(result.droppedPartitions, ['202001', '202002']);
    const left = await repository.query<{ message_id: string }>(
      `SELECT message_id FROM telemetry_raw WHERE device_id = '${deviceId}'`,
    );
    assert.deepEqual(left, [{ message_id: `${deviceId}-m2` }]);
    assert.deepEqual(
      (await applyRetention(repository, { table: Tables.raw, days: 365 })).droppedPartitions,
      [],
    );
  });

  it('stores every message exactly once despite duplicates, and the latest value per device and metric', async () => {
    app = await startApp('dmp-data', appEnv, { label: `dmp-data-e2e-${run}` });
    const base = Date.now() - 60_000;
    const devices = Array.from({ length: 6 }, (_, d) => `e2e-${run}-d${d}`);
    const messages = devices.flatMap((deviceId, d) =>
      Array.from({ length: 5 }, (_, i) =>
        telemetry(deviceId, i, base, {
          temp: 20 + d + i / 10,
          on: i % 2 === 0,
          mode: `mode-${i}`,
          ...(i === 0 ? { boot: 1 } : {}),
        }),
      ),
    );
    const duplicates = messages.filter((_, i) => i % 4 === 0);
    sent.push(...messages);
    storedDevices = devices;
    storedMessages = messages;
    const started = Date.now();
    await sendAll([...messages, ...duplicates]);

    await waitFor(
      'every message in telemetry_raw',
      async () => (await rawCount(devices)).ids === messages.length,
      {
        timeoutMs: 60_000,
        intervalMs: 250,
      },
    );
    const elapsed = Date.now() - started;
    // Duplicates are handled (stored again, collapsing on the key) before we compare.
    await waitFor(
      'the duplicates handled',
      async () =>
        (await readMetric(app!.baseUrl, 'dmp_data_messages_total', { outcome: 'stored' })) >=
        messages.length + duplicates.length,
      { timeoutMs: 30_000 },
    );
    assert.deepEqual(await rawCount(devices), { rows: messages.length, ids: messages.length });
    console.log(
      `stored ${messages.length} messages (+${duplicates.length} duplicates) from ${devices.length} devices in ${elapsed} ms`,
    );

    const [one] = await repository.query<Record<string, unknown>>(
      `SELECT device_id, message_id, kind, ts_ms, toUnixTimestamp(ts) AS ts_s, seq, tenant_id, product_id, site_id,
              metric_names, metric_values, text_names, text_values, received_at_ms
       FROM telemetry_raw FINAL WHERE message_id = '${messages[0].messageId}'`,
    );
    const m0 = messages[0];
    assert.deepEqual(one, {
      device_id: m0.deviceId,
      message_id: m0.messageId,
      kind: 'event',
      ts_ms: String(m0.ts),
      ts_s: Math.floor(m0.ts / 1000),
      seq: '0',
      tenant_id: 'tenant-e2e',
      product_id: 'product-e2e',
      site_id: 'site-0',
      metric_names: ['temp', 'on', 'boot'],
      metric_values: [20, 1, 1],
      text_names: ['mode'],
      text_values: ['mode-0'],
      received_at_ms: String(m0.receivedAt),
    });

    // Latest state: argMax and FINAL agree with the newest message of each device.
    const latest = await repository.query<{
      device_id: string;
      metric: string;
      value: number;
      text: string;
      ts_ms: string;
    }>(
      `SELECT device_id, metric, argMax(value, version) AS value, argMax(text_value, version) AS text, max(ts_ms) AS ts_ms
       FROM telemetry_latest WHERE device_id IN (${stringList(devices)}) GROUP BY device_id, metric ORDER BY device_id, metric`,
    );
    const expected = devices.flatMap((deviceId, d) => [
      { device_id: deviceId, metric: 'boot', value: 1, text: '', ts_ms: String(base) },
      { device_id: deviceId, metric: 'mode', value: 0, text: 'mode-4', ts_ms: String(base + 4_000) },
      { device_id: deviceId, metric: 'on', value: 1, text: '', ts_ms: String(base + 4_000) },
      { device_id: deviceId, metric: 'temp', value: 20 + d + 0.4, text: '', ts_ms: String(base + 4_000) },
    ]);
    assert.deepEqual(latest, expected);
    const final = await repository.query<{
      device_id: string;
      metric: string;
      value: number;
      text: string;
      ts_ms: string;
    }>(
      `SELECT device_id, metric, value, text_value AS text, ts_ms
       FROM telemetry_latest FINAL WHERE device_id IN (${stringList(devices)}) ORDER BY device_id, metric`,
    );
    assert.deepEqual(final, expected);

    const health = await fetch(`${app.baseUrl}/health`);
    assert.equal(health.status, 200);
    const body = (await health.json()) as { info: Record<string, { status: string }> };
    assert.equal(body.info.clickhouse?.status, 'up');
    assert.equal(body.info.rocketmq?.status, 'up');
  });

  it('keeps telemetry_1m equal to a recomputation from deduplicated raw data, through duplicates and late data', async () => {
    assert.ok(app && storedDevices.length > 0, 'the messages of the previous test are stored');
    const expected = expectedAggregates(storedMessages);
    await aggregatesBecome('telemetry_1m for the stored messages', storedDevices, expected);
    assert.deepEqual(await aggregates(storedDevices), expected);
    assert.deepEqual(await fromRaw(storedDevices), expected);

    // Late data for a minute already computed, plus redeliveries of messages already counted.
    const late = {
      ...storedMessages[1],
      messageId: `${storedMessages[1].messageId}-late`,
      ts: storedMessages[1].ts + 1,
      metrics: { temp: -40, on: false },
    };
    await sendAll([late, storedMessages[0], storedMessages[2]]);
    const after = expectedAggregates([...storedMessages, late]);
    assert.notDeepEqual(after, expected);
    await aggregatesBecome('telemetry_1m recomputed with the late message', storedDevices, after);
    assert.deepEqual(await fromRaw(storedDevices), after);
    storedMessages.push(late);
    // The late message's mark is read (the cursor passes it) some seconds after the recomputation it
    // caused may already have been done from the scan of an earlier mark: wait for it.
    await waitFor('no minute left pending', async () => (await pendingMarks(storedDevices)) === 0, {
      timeoutMs: 30_000,
      intervalMs: 300,
    });
    assert.deepEqual(await aggregates(storedDevices), after);
  });

  it('recomputes minutes older than two days from telemetry_raw, the recent ones from telemetry_1m_source', async () => {
    assert.ok(app, 'dmp-data runs');
    const statements = (source: string) =>
      readMetric(app!.baseUrl, 'dmp_data_aggregation_run_seconds_count', { source });
    assert.ok((await statements('recent')) > 0, 'the recent minutes of the earlier tests');
    const fromRawBefore = await statements('raw');
    // Backfill: a device's buffer of three days ago.
    const devices = [`e2e-${run}-old0`, `e2e-${run}-old1`];
    const base = Date.now() - 3 * 86_400_000;
    const messages = devices.flatMap((deviceId) =>
      Array.from({ length: 3 }, (_, i) =>
        telemetry(deviceId, i, base + i * 25_000, { power: i * 10 + 1, on: i !== 1 }),
      ),
    );
    await sendAll(messages);
    const expected = expectedAggregates(messages);
    await aggregatesBecome('telemetry_1m for the minutes of three days ago', devices, expected);
    assert.deepEqual(await fromRaw(devices), expected);
    // The statement's rows are visible a moment before dmp-data has its answer and counts it.
    await waitFor('recomputed from telemetry_raw', async () => (await statements('raw')) > fromRawBefore, {
      timeoutMs: 5_000,
      intervalMs: 100,
    });
  });

  it("runs a recomputation statement longer than ClickHouse's max_query_size (256 KiB)", async () => {
    const [message] = storedMessages;
    const minute = minuteOfMs(message.ts);
    const keys = [
      { device_id: message.deviceId, minute },
      ...Array.from({ length: 4_000 }, (_, i) => ({ device_id: `${'x'.repeat(58)}-${i}`, minute })),
    ];
    const sql = recomputeSql({ source: 'recent', keys }, Date.now());
    assert.ok(Buffer.byteLength(sql) > 262_144, `${Buffer.byteLength(sql)} bytes`);
    await repository.command(sql);
    assert.deepEqual(await aggregates(storedDevices), expectedAggregates(storedMessages));
  });

  it('dead-letters malformed messages and cleans bad values, each with its reason, storing the rest', async () => {
    assert.ok(app, 'dmp-data runs');
    const deviceId = `e2e-${run}-bad`;
    const now = Date.now();
    const notJson = telemetry(deviceId, 1, now, { temp: 1 });
    const wrongShape = telemetry(deviceId, 2, now, { temp: 1 });
    const future = telemetry(deviceId, 3, now + 3_600_000, { temp: 1 });
    const tooOld = telemetry(deviceId, 4, now - 400 * 86_400_000, { temp: 1 });
    const notFinite = telemetry(deviceId, 5, now, { temp: 21.5, hum: 40 });
    const outOfRange = telemetry(deviceId, 6, now, { temp: 22, hum: 150 });
    const good = telemetry(deviceId, 7, now, { temp: 23, hum: 50 });
    await send(notJson, Buffer.from('{"deviceId": "broken'));
    await send(
      wrongShape,
      Buffer.from(JSON.stringify({ ...wrongShape, messageId: undefined, ts: 'yesterday' })),
    );
    await send(future);
    await send(tooOld);
    // 1e999 is how a body carries Infinity: JSON.parse reads it as such.
    await send(notFinite, Buffer.from(JSON.stringify(notFinite).replace('"temp":21.5', '"temp":1e999')));
    await send(outOfRange);
    await send(good);

    // A body that is no JSON at all: the consumer dead-letters the RocketMQ message as it is.
    let undecodable: MessageView | undefined;
    await waitFor(
      'the undecodable message in the dead-letter topic',
      async () => {
        for (const view of await within(20_000, 'dead-letter receive', deadLetters.receive(32, 10_000))) {
          await deadLetters.ack(view);
          if (view.keys.includes(notJson.messageId)) undecodable = view;
        }
        return undecodable !== undefined;
      },
      { timeoutMs: 60_000, intervalMs: 0 },
    );
    assert.equal(undecodable!.properties.get('dmp_error_code'), 'DMP_ERR_INVALID_MESSAGE');
    assert.equal(undecodable!.properties.get('dmp_dead_letter_reason'), 'non_retryable');
    assert.equal(undecodable!.properties.get('dmp_source_topic'), topics.event);
    assert.equal(undecodable!.properties.get('dmp_consumer_group'), CONSUMER_GROUP);
    assert.ok((await readMetric(app.baseUrl, 'dmp_data_messages_total', { outcome: 'invalid_json' })) >= 1);

    // Everything else went through cleaning: one dead_letters row per message it changed, with its reason.
    const expected = new Map([
      [future.messageId, 'DMP_ERR_CLEAN_TS_FUTURE'],
      [tooOld.messageId, 'DMP_ERR_CLEAN_TS_TOO_OLD'],
      [notFinite.messageId, 'DMP_ERR_CLEAN_NOT_FINITE'],
      [outOfRange.messageId, 'DMP_ERR_CLEAN_OUT_OF_RANGE'],
    ]);
    type CleanedRow = {
      source_message_id: string;
      error_code: string;
      payload: string;
      error_message: string;
    };
    let rows: CleanedRow[] = [];
    await waitFor(
      () => `cleaning's dead letters in dead_letters (${rows.length} so far)`,
      async () => {
        rows = await repository.query<CleanedRow>(
          `SELECT source_message_id, error_code, payload_text AS payload, error_message FROM dead_letters FINAL
           WHERE device_id = '${deviceId}' AND error_code LIKE 'DMP_ERR_CLEAN_%'`,
        );
        return rows.length >= expected.size + 1;
      },
      { timeoutMs: 60_000, intervalMs: 500 },
    );
    const byId = new Map(rows.map((row) => [row.source_message_id, row]));
    for (const [messageId, code] of expected) assert.equal(byId.get(messageId)?.error_code, code, messageId);
    const shape = rows.find(
      (row) => !expected.has(row.source_message_id) && row.source_message_id !== good.messageId,
    );
    assert.match(
      shape?.error_code ?? '',
      /^DMP_ERR_CLEAN_(MISSING|INVALID)_FIELD$/,
      'the message of the wrong shape',
    );
    assert.match(shape!.error_message, /messageId|ts/);
    assert.match(byId.get(notFinite.messageId)!.payload, /1e999/, 'the original value is kept');
    assert.equal(rows.length, expected.size + 1, 'nothing else was dead-lettered');
    for (const reason of new Set(expected.values()))
      assert.ok((await readMetric(app.baseUrl, 'dmp_data_cleaned_total', { reason })) >= 1, reason);

    // What cleaning left of a message is stored; what it refused is not.
    await waitFor(
      'the cleaned and the good messages stored',
      async () => (await rawCount([deviceId])).rows === 3,
      {
        timeoutMs: 30_000,
        intervalMs: 500,
      },
    );
    const stored = await repository.query<{ message_id: string; metric_names: string[] }>(
      `SELECT message_id, metric_names FROM telemetry_raw FINAL WHERE device_id = '${deviceId}' ORDER BY message_id`,
    );
    assert.deepEqual(stored, [
      { message_id: notFinite.messageId, metric_names: ['hum'] },
      { message_id: outOfRange.messageId, metric_names: ['temp'] },
      { message_id: good.messageId, metric_names: ['temp', 'hum'] },
    ]);
  });

  it('loses nothing while ClickHouse is away: holds, retries, lets RocketMQ redeliver, then stores each message once', async () => {
    assert.ok(app, 'dmp-data runs');
    const devices = Array.from({ length: 4 }, (_, d) => `e2e-${run}-away${d}`);
    const base = Date.now();
    const messages = devices.flatMap((deviceId) =>
      Array.from({ length: 3 }, (_, i) => telemetry(deviceId, i, base, { level: i })),
    );
    const errorsBefore = await readMetric(app.baseUrl, 'dmp_clickhouse_insert_errors_total');
    await relay.down();
    await sendAll(messages);
    await waitFor(
      'failed inserts',
      async () => (await readMetric(app!.baseUrl, 'dmp_clickhouse_insert_errors_total')) > errorsBefore + 2,
      { timeoutMs: 20_000 },
    );
    const health = await fetch(`${app.baseUrl}/health`);
    assert.equal(health.status, 503, '/health reports ClickHouse down');
    // Longer than DATA_INSERT_RETRY_MAX_MS: batches are given back to RocketMQ for redelivery.
    await waitFor(
      'a batch handed back for redelivery',
      async () => (await readMetric(app!.baseUrl, 'dmp_data_messages_total', { outcome: 'failed' })) > 0,
      { timeoutMs: 20_000 },
    );
    assert.deepEqual(await rawCount(devices), { rows: 0, ids: 0 });
    await relay.up();
    await waitFor(
      'every message stored after ClickHouse came back',
      async () => (await rawCount(devices)).ids === messages.length,
      {
        timeoutMs: 90_000,
        intervalMs: 500,
      },
    );
    assert.deepEqual(await rawCount(devices), { rows: messages.length, ids: messages.length });
    // Raw is inserted before latest: a batch's raw rows can be visible while its latest insert runs.
    const latest = await waitFor(
      'the newest value of each device in telemetry_latest',
      async () => {
        const rows = await repository.query<{ device_id: string; value: number }>(
          `SELECT device_id, value FROM telemetry_latest FINAL WHERE device_id IN (${stringList(devices)}) AND metric = 'level' ORDER BY device_id`,
        );
        return rows.length === devices.length && rows.every((row) => row.value === 2) ? rows : undefined;
      },
      { timeoutMs: 30_000, intervalMs: 500 },
    );
    assert.deepEqual(
      latest,
      devices.map((device_id) => ({ device_id, value: 2 })),
    );
  });

  it("shows the ClickHouse insert in each sampled message's trace", async (t) => {
    assert.ok(app, 'dmp-data runs');
    const jaegerUp = await fetch(`${stack.jaegerQueryUrl}/api/services`).then(
      (r) => r.ok,
      () => false,
    );
    if (!jaegerUp) return t.skip('Jaeger is not running');
    const traceId = randomBytes(16).toString('hex');
    const message = telemetry(`e2e-${run}-traced`, 0, Date.now(), { temp: 5 });
    await send(message, undefined, `00-${traceId}-${randomBytes(8).toString('hex')}-01`);
    // The process span ends after the ack, later than the INSERT spans: it may be in a later export.
    const trace = await waitFor(
      'the message trace with its process and INSERT spans in Jaeger',
      async () => {
        const found = await getJaegerTrace(traceId);
        const names = found?.spans.map((s) => s.operationName) ?? [];
        return ['INSERT telemetry_raw', 'INSERT telemetry_latest', `process ${topics.event}`].every((name) =>
          names.includes(name),
        )
          ? found
          : undefined;
      },
      { timeoutMs: 30_000, intervalMs: 1_000 },
    );
    const process = trace.spans.find((s) => s.operationName === `process ${topics.event}`);
    const insert = trace.spans.find((s) => s.operationName === 'INSERT telemetry_raw');
    assert.ok(process && insert);
    assert.ok(
      insert.references.some((r) => r.refType === 'CHILD_OF' && r.spanID === process.spanID),
      'INSERT under process',
    );
    assert.ok(
      insert.references.some((r) => r.refType === 'FOLLOWS_FROM' && r.traceID !== traceId),
      'linked to the batch span',
    );
    const tags = Object.fromEntries(insert.tags.map((tag) => [tag.key, tag.value]));
    assert.equal(tags['db.system.name'], 'clickhouse');
    assert.equal(tags['db.namespace'], database);
    assert.equal(tags['db.collection.name'], 'telemetry_raw');
    assert.equal(tags['db.operation.name'], 'INSERT');
    assert.ok(Number(tags['db.operation.batch.size']) >= 1);
  });

  it('drains on SIGTERM and exits 0; what it did not take is delivered after a restart', async () => {
    assert.ok(app, 'dmp-data runs');
    const devices = Array.from({ length: 20 }, (_, d) => `e2e-${run}-stop${d}`);
    const messages = devices.flatMap((deviceId) =>
      Array.from({ length: 4 }, (_, i) => telemetry(deviceId, i, Date.now(), { n: i })),
    );
    await sendAll(messages);
    await waitFor('the first of them stored', async () => (await rawCount(devices)).ids > 0, {
      timeoutMs: 30_000,
      intervalMs: 50,
    });
    const stopping = Date.now();
    const label = `dmp-data-e2e-${run}`;
    // Nest re-raises the signal once its shutdown hooks are done: the exit is by SIGTERM (code null).
    assert.ok([0, null].includes(await app.stop('SIGTERM')));
    const stoppedAfter = Date.now() - stopping;
    const log = readFileSync(join(TEST_LOG_DIR, `${label}.log`), 'utf8');
    assert.match(log, /consumer stopped and writer drained/);
    assert.doesNotMatch(log, /still unsettled|closed before writing/);
    const before = await rawCount(devices);
    assert.equal(before.rows, before.ids);
    console.log(`SIGTERM: exited in ${stoppedAfter} ms with ${before.ids}/${messages.length} stored`);

    app = await startApp('dmp-data', appEnv, { label: `dmp-data-e2e-${run}-2` });
    await waitFor(
      'the rest stored after the restart',
      async () => (await rawCount(devices)).ids === messages.length,
      {
        timeoutMs: 60_000,
        intervalMs: 250,
      },
    );
    await sleep(500);
    assert.deepEqual(await rawCount(devices), { rows: messages.length, ids: messages.length });
  });

  it('writes, per message, a raw row, its view row, a latest row per metric, and a mark per minute and batch', async () => {
    // Each device once, as in a large fleet (a batch cannot collapse anything), five minutes ago with an
    // hour of allowed lateness: on-time data. Merges are stopped so that the tables hold exactly the rows
    // written (a merge of telemetry_latest would collapse rows).
    const tables = [Tables.raw, Tables.minuteSource, Tables.latest, Tables.minuteMarks];
    for (const table of tables) await repository.command(`SYSTEM STOP MERGES ${database}.${table}`);
    try {
      // The new process starts while the previous one drains (nothing is sent until it has exited).
      [, app] = await Promise.all([
        app?.stop(),
        startApp(
          'dmp-data',
          { ...appEnv, DATA_AGGREGATION_LATENESS_MS: '3600000' },
          { label: `dmp-data-e2e-${run}-rows` },
        ),
      ]);
      const [{ now: serverNow }] = await repository.query<{ now: string }>('SELECT toUInt32(now()) AS now');
      const minute = minuteOfMs(Date.now() - 5 * 60_000);
      const snapshots = Array.from({ length: 20 }, (_, d) => ({
        ...telemetry(`e2e-${run}-rows-s${d}`, 0, minute * 1000 + 10_000 + d, {
          temp: d,
          hum: 40,
          power: 100 + d,
          voltage: 230,
          on: true,
          rssi: -60,
        }),
        kind: 'snapshot' as const,
      }));
      const changes = Array.from({ length: 20 }, (_, d) =>
        telemetry(`e2e-${run}-rows-c${d}`, 1, minute * 1000 + 20_000 + d, { temp: d }),
      );
      const messages = [...snapshots, ...changes];
      const devices = messages.map((m) => m.deviceId);
      await sendAll(messages);
      await waitFor(
        'the messages stored and marked',
        async () => (await rawCount(devices)).ids === messages.length && (await pendingMarks(devices)) === 40,
        { timeoutMs: 30_000, intervalMs: 200 },
      );
      const count = async (table: string, where: string) =>
        Number(
          (await repository.query<{ n: string }>(`SELECT count() AS n FROM ${table} WHERE ${where}`))[0].n,
        );
      const ofDevices = `device_id IN (${stringList(devices)})`;
      const rows = {
        [Tables.raw]: await count(Tables.raw, ofDevices),
        [Tables.minuteSource]: await count(Tables.minuteSource, ofDevices),
        [Tables.latest]: await count(Tables.latest, ofDevices),
        [Tables.minuteMarks]: await count(
          Tables.minuteMarks,
          `(${ofDevices} OR (device_id = '' AND minute = toDateTime(${minute}))) AND marked_at >= toDateTime(${serverNow})`,
        ),
      };
      const metrics = await (await fetch(`${app.baseUrl}/metrics`)).text();
      const batches = metricSum(metrics, 'dmp_data_batch_rows_count');
      console.log(
        `rows per message (${messages.length} messages of ${devices.length} devices, ${batches} batch(es)): ` +
          Object.entries(rows)
            .map(([table, n]) => `${table} ${(n / messages.length).toFixed(3)}`)
            .join(', ') +
          `; in all ${(Object.values(rows).reduce((a, b) => a + b, 0) / messages.length).toFixed(3)}`,
      );
      assert.equal(rows[Tables.raw], messages.length);
      assert.equal(rows[Tables.minuteSource], messages.length);
      assert.equal(rows[Tables.latest], 20 * 6 + 20 * 1, 'one row per device and metric');
      // One minute, on time: one mark for the whole minute per batch, none per device.
      assert.equal(await count(Tables.minuteMarks, ofDevices), 0, 'no mark per device');
      assert.ok(rows[Tables.minuteMarks] >= 1 && rows[Tables.minuteMarks] <= batches, `${batches} batch(es)`);
    } finally {
      for (const table of tables) await repository.command(`SYSTEM START MERGES ${database}.${table}`);
    }
  });

  it('loses no aggregate recomputation to a kill -9: the marks wait in ClickHouse for the next run', async () => {
    // Minutes are marked but not computed yet (an hour of allowed lateness) when the process dies. It
    // starts while the previous one drains (nothing is sent until that one has exited).
    [, app] = await Promise.all([
      app?.stop(),
      startApp(
        'dmp-data',
        { ...appEnv, DATA_AGGREGATION_LATENESS_MS: '3600000' },
        { label: `dmp-data-e2e-${run}-3` },
      ),
    ]);
    const devices = Array.from({ length: 3 }, (_, d) => `e2e-${run}-kill${d}`);
    const base = Date.now() - 5 * 60_000;
    const messages = devices.flatMap((deviceId) =>
      Array.from({ length: 3 }, (_, i) => telemetry(deviceId, i, base + i * 30_000, { power: i * 10 })),
    );
    await sendAll(messages);
    const expected = expectedAggregates(messages);
    const pendingMinutes = () => pendingMarks(devices);
    // A batch's marks are its last insert: wait for every (device, minute) of the messages to be marked.
    // Killed between a batch's raw rows and its marks, that batch would be redelivered only after
    // DATA_INVISIBLE_MS (60 s), and its minutes marked then: later than this test waits.
    await waitFor(
      'the messages stored and all their minutes marked',
      async () =>
        (await rawCount(devices)).ids === messages.length && (await pendingMinutes()) === expected.length,
      { timeoutMs: 30_000 },
    );
    await app.stop('SIGKILL');
    app = undefined;
    assert.equal(await pendingMinutes(), expected.length, 'minutes pending after the kill');
    assert.deepEqual(await aggregates(devices), []);

    // A day of the log ended more than a day before the cursor, and a day of telemetry_1m_source
    // more than three days ago: dropped by the restarted process.
    const stale = `e2e-${run}-stale`;
    await repository.command(
      `INSERT INTO telemetry_1m_marks (marked_at, device_id, minute) VALUES (now() - 3 * 86400, '${stale}', toDateTime(60))`,
    );
    await insertStaleSourceDay(stale);

    app = await startApp('dmp-data', appEnv, { label: `dmp-data-e2e-${run}-4` });
    // Exported from the start, before any statement read that table: a dashboard's rate is 0, not absent.
    const exposition = await (await fetch(`${app.baseUrl}/metrics`)).text();
    for (const source of ['recent', 'raw'])
      assert.match(
        exposition,
        new RegExp(`^dmp_data_aggregation_run_seconds_count\\{[^}]*source="${source}"`, 'm'),
      );
    await aggregatesBecome('telemetry_1m computed after the restart', devices, expected);
    assert.deepEqual(await fromRaw(devices), expected);
    for (const table of [Tables.minuteMarks, Tables.minuteSource]) await staleDayDropped(table, stale);
  });

  it('moves its cursor only past marks: a pass over an empty log writes no progress', async () => {
    assert.ok(app, 'dmp-data runs');
    const seconds = async (sql: string) =>
      Number((await repository.query<{ s: string }>(`SELECT toUInt32(${sql}) AS s`))[0].s);
    const cursor = () => seconds(`(SELECT max(marks_until) FROM ${Tables.minuteProgress})`);
    const lastMark = (where = '1') =>
      seconds(`(SELECT max(marked_at) FROM ${Tables.minuteMarks} WHERE ${where})`);
    const passed = async () => (await cursor()) > (await lastMark());
    // Batches that processes of earlier tests had stored but not acknowledged (killed, or ClickHouse
    // away) come back DATA_INVISIBLE_MS (60 s) after they were received, and mark their minutes
    // again: the cursor passes those marks too.
    await waitFor('the cursor past every mark', passed, { timeoutMs: 90_000, intervalMs: 300 });
    const idle = await cursor();
    const passes = () => readMetric(app!.baseUrl, 'dmp_data_aggregation_passes_total');
    const passesBefore = await passes();
    await waitFor('10 more passes over the mark log', async () => (await passes()) >= passesBefore + 10, {
      timeoutMs: 30_000,
      intervalMs: 100,
    });
    assert.equal(await cursor(), idle, 'no progress without marks');

    // Written the way the writer writes it. Not sent through RocketMQ: after the kill -9 above, a FIFO
    // queue the killed consumer held stays blocked until DATA_INVISIBLE_MS (60 s) passed.
    const deviceId = `e2e-${run}-cursor`;
    await repository.insertRows(
      Tables.minuteMarks,
      [{ device_id: deviceId, minute: minuteOfMs(Date.now() - 120_000) }],
      { columns: ['device_id', 'minute'] },
    );
    const newMark = await lastMark(`device_id = '${deviceId}'`);
    assert.ok(newMark >= idle, 'the new mark is at or after the cursor');
    await waitFor('the cursor past the new mark', async () => (await cursor()) > newMark, {
      timeoutMs: 30_000,
      intervalMs: 300,
    });
  });

  it("drops telemetry_1m_source's old days with the aggregation off too (its view fills it anyway)", async () => {
    // The previous process (aggregation on) must be gone before the stale day is written: SIGKILL spares
    // its drain (≈ 15 s). What it may hold (batches of the kill above, redelivered) is stored already.
    await app?.stop('SIGKILL');
    const stale = `e2e-${run}-stale-off`;
    await insertStaleSourceDay(stale);
    app = await startApp(
      'dmp-data',
      { ...appEnv, DATA_AGGREGATION_ENABLED: 'false' },
      { label: `dmp-data-e2e-${run}-5` },
    );
    await staleDayDropped(Tables.minuteSource, stale);
  });

  /** A row of telemetry_1m_source four days old (its day is older than the three kept). */
  const insertStaleSourceDay = (deviceId: string) =>
    repository.command(
      `INSERT INTO ${Tables.minuteSource} (minute, device_id, ts_ms, message_id, metric_names, metric_values)
       VALUES (toStartOfMinute(now() - 4 * 86400), '${deviceId}', 1, 'stale', ['power'], [1])`,
    );

  const staleDayDropped = (table: string, deviceId: string) =>
    waitFor(
      `the stale day of ${table} dropped`,
      async () => {
        const [row] = await repository.query<{ n: string }>(
          `SELECT count() AS n FROM ${table} WHERE device_id = '${deviceId}'`,
        );
        return Number(row.n) === 0;
      },
      { timeoutMs: 10_000, intervalMs: 300 },
    );
});
