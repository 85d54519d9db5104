/**
 * dmp-data under load while it is killed (`kill -9`) and while RocketMQ's broker restarts, against the
 * real local stack. Two dmp-data instances share the load (one consumer group); afterwards ClickHouse
 * must hold every distinct message sent exactly once, and every 1-minute aggregate must equal its
 * recomputation from the deduplicated raw rows. Own topics (dmp_soak_test_*) and groups, created by the
 * test, and database.
 */
import { ClickHouseRepository, stringList } from '@dmp/clickhouse';
import type { NormalizedTelemetry } from '@dmp/contracts';
import { RocketMqProducer } from '@dmp/messaging';
import {
  chainTopicTypes,
  createRocketmqResources,
  dropDatabaseInBackground,
  readMetric,
  readMinuteAggregates,
  recomputedFromRaw,
  restartRocketMqBroker,
  silentNestLogger,
  stack,
  startApp,
  waitFor,
  type RunningApp,
} from '@dmp/testing';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';

const run = randomBytes(4).toString('hex');
const database = `dmp_test_soak_${run}`;
const topics = {
  event: 'dmp_soak_test_event',
  snapshot: 'dmp_soak_test_snapshot',
  alarm: 'dmp_soak_test_alarm',
  deadLetter: 'dmp_soak_test_dead_letter',
};
const DEVICES = 100;
/** Per device: 4 messages a second, so 400 msg/s in all. */
const SEND_INTERVAL_MS = 250;
/**
 * Messages an instance stores after its start before it is killed, and each stores mid-stream before a
 * broker restart (≈ 2.5 s of its half of the load).
 */
const STORED_BEFORE_KILL = 500;
/**
 * Messages the surviving instance stores alone before the killed one comes back (≈ 1 s of its half: the
 * queues the killed one was reading stay blocked until their messages' invisibility ends).
 */
const STORED_ALONE = 200;
/** One message in this many is sent twice, as a producer retry would. */
const DUPLICATE_EVERY = 20;
const groups = {
  data: 'dmp_data_soak_test',
  alarm: 'dmp_data_alarm_soak_test',
  deadLetter: 'dmp_data_dead_letter_soak_test',
};

describe('dmp-data through crashes and broker restarts', () => {
  // A generous timeout: the checks read a whole run's rows (FINAL) while ClickHouse merges them.
  const repository = new ClickHouseRepository({ ...stack.clickhouse, database, requestTimeoutMs: 180_000 });
  const producer = new RocketMqProducer({
    endpoints: stack.rocketmq.endpoints,
    namespace: stack.rocketmq.namespace,
    topics: [topics.event, topics.snapshot],
    serviceName: 'soak-e2e',
    logger: silentNestLogger,
  });
  const instances: (RunningApp | undefined)[] = [undefined, undefined];
  let restarts = 0;
  /** Set by after(): the load stops too when a test failed midway (its loops would otherwise retry forever). */
  let stopping = false;
  const appEnv: Record<string, string> = {
    CLICKHOUSE_DATABASE: database,
    ROCKETMQ_TOPIC_EVENT: topics.event,
    ROCKETMQ_TOPIC_SNAPSHOT: topics.snapshot,
    ROCKETMQ_TOPIC_ALARM: topics.alarm,
    ROCKETMQ_TOPIC_DEAD_LETTER: topics.deadLetter,
    DATA_CONSUMER_GROUP: groups.data,
    ALARM_CONSUMER_GROUP: groups.alarm,
    DEAD_LETTER_CONSUMER_GROUP: groups.deadLetter,
    // A killed instance's messages come back after this long (the broker's lower bound).
    DATA_INVISIBLE_MS: '10000',
    DATA_AGGREGATION_LATENESS_MS: '0',
    DATA_AGGREGATION_INTERVAL_MS: '500',
    // A process killed with -9 held the aggregation lease: the next one aggregates after this long.
    DATA_AGGREGATION_LEASE_MS: '3000',
    // The aggregator reads marks once they are older than this plus 1 s (30 s by default).
    CLICKHOUSE_REQUEST_TIMEOUT_MS: '10000',
    LOG_LEVEL: 'warn',
  };

  const startInstance = async (index: number) => {
    instances[index] = await startApp('dmp-data', appEnv, {
      label: `soak-${run}-dmp-data-${index}-${restarts++}`,
    });
  };

  before(async () => {
    await createRocketmqResources({
      topics: chainTopicTypes(topics),
      groups: { [groups.data]: 'orderly', [groups.alarm]: 'orderly', [groups.deadLetter]: 'concurrently' },
    });
    await producer.start();
    await Promise.all([startInstance(0), startInstance(1)]);
  });

  after(async () => {
    stopping = true;
    // Every message is stored and checked (or a test failed): SIGKILL spares the instances' drain
    // (≈ 15 s: dmp-data's four consumers wait out their long polls in turn).
    await Promise.allSettled(instances.flatMap((app) => (app ? [app.stop('SIGKILL')] : [])));
    await producer.stop();
    // DROP DATABASE waits for the merges of this run's many parts (minutes on a busy 2-core machine).
    dropDatabaseInBackground(database);
    await repository.close();
  });

  /** Device messages an instance has stored since it started. */
  const stored = (app: RunningApp | undefined) =>
    readMetric(app!.baseUrl, 'dmp_data_messages_total', { outcome: 'stored' });

  /**
   * Sends, per device in order, a message every SEND_INTERVAL_MS until `chaos` is over, retrying each
   * until RocketMQ takes it (as dmp-kernel does), and runs `chaos` meanwhile. Returns the distinct
   * messages sent.
   */
  async function underLoad(label: string, chaos: () => Promise<void>): Promise<NormalizedTelemetry[]> {
    const sent: NormalizedTelemetry[] = [];
    const base = Date.now() - 15 * 60_000;
    let chaosOver = false;
    const loading = () => !stopping && !chaosOver;
    const send = async (message: NormalizedTelemetry) => {
      for (;;) {
        try {
          await producer.send({
            topic: message.kind === 'snapshot' ? topics.snapshot : topics.event,
            body: Buffer.from(JSON.stringify(message)),
            messageGroup: message.deviceId,
            keys: [message.messageId],
            tag: message.kind,
          });
          return;
        } catch (error) {
          if (stopping) throw error;
          await sleep(500);
        }
      }
    };
    const device = async (d: number) => {
      const deviceId = `soak-${run}-${label}-${d}`;
      for (let i = 0; loading(); i++) {
        const paced = sleep(SEND_INTERVAL_MS);
        const message: NormalizedTelemetry = {
          deviceId,
          messageId: `${deviceId}-m${i}`,
          kind: i % 10 === 0 ? 'snapshot' : 'event',
          // Two seconds of device time per message: the run spans several minutes of windows.
          ts: base + i * 2_000 + d,
          seq: i,
          metrics: { temp: Math.round(Math.random() * 8_000) / 100, power: i % 50, on: i % 3 === 0 },
          receivedAt: Date.now(),
          tenantId: 'tenant-soak',
          productId: 'product-soak',
          siteId: `site-${d % 4}`,
        };
        await send(message);
        if (i % DUPLICATE_EVERY === 0) await send(message);
        sent.push(message);
        await paced;
      }
    };
    const chaosDone = chaos().finally(() => (chaosOver = true));
    await Promise.all([...Array.from({ length: DEVICES }, (_, d) => device(d)), chaosDone]);
    return sent;
  }

  /** Waits until ClickHouse holds every sent message, then checks raw rows and aggregates exactly. */
  async function assertExact(sent: NormalizedTelemetry[]) {
    const devices = [...new Set(sent.map((m) => m.deviceId))];
    const inDevices = `device_id IN (${stringList(devices)})`;
    let stored = 0;
    await waitFor(
      () => `${sent.length} messages in telemetry_raw (${stored} so far)`,
      async () => {
        const [row] = await repository.query<{ ids: string }>(
          `SELECT uniqExact(message_id) AS ids FROM telemetry_raw WHERE ${inDevices}`,
        );
        return (stored = Number(row.ids)) >= sent.length;
      },
      { timeoutMs: 180_000, intervalMs: 1_000 },
    );
    const [raw] = await repository.query<{ rows: string; ids: string }>(
      `SELECT count() AS rows, uniqExact(message_id) AS ids FROM telemetry_raw FINAL WHERE ${inDevices}`,
    );
    assert.deepEqual(
      { rows: Number(raw.rows), ids: Number(raw.ids) },
      { rows: sent.length, ids: sent.length },
    );
    const storedIds = new Set(
      (
        await repository.query<{ message_id: string }>(
          `SELECT message_id FROM telemetry_raw FINAL WHERE ${inDevices}`,
        )
      ).map((r) => r.message_id),
    );
    assert.deepEqual(
      sent.filter((m) => !storedIds.has(m.messageId)).map((m) => m.messageId),
      [],
      'no sent message is missing',
    );

    const recomputed = await readMinuteAggregates(repository, recomputedFromRaw(inDevices), inDevices);
    assert.deepEqual(
      new Set(recomputed.map((r) => r.device_id)),
      new Set(devices),
      'every device has minutes',
    );
    let latest: unknown[] = [];
    await waitFor(
      () => `telemetry_1m equal to its recomputation (${latest.length} of ${recomputed.length} minutes)`,
      async () =>
        JSON.stringify((latest = await readMinuteAggregates(repository, 'telemetry_1m FINAL', inDevices))) ===
        JSON.stringify(recomputed),
      { timeoutMs: 60_000, intervalMs: 1_000 },
    );
  }

  it('stores every message exactly once, and exact aggregates, while its instances are killed with kill -9', async () => {
    const kills: number[] = [];
    const started = Date.now();
    const sent = await underLoad('kill', async () => {
      for (const index of [0, 1, 0]) {
        // Mid-stream: both instances store their share since their start, and the one to kill holds
        // messages it received and has not settled yet.
        await waitFor(
          `both instances storing, instance ${index} with messages in flight`,
          async () =>
            (await Promise.all(instances.map(stored))).every((count) => count >= STORED_BEFORE_KILL) &&
            (await readMetric(instances[index]!.baseUrl, 'dmp_rocketmq_in_flight', {
              group: appEnv.DATA_CONSUMER_GROUP,
            })) > 0,
          { timeoutMs: 60_000 },
        );
        assert.equal(await instances[index]!.stop('SIGKILL'), null, 'killed by the signal');
        kills.push(index);
        const survivor = instances[1 - index];
        const before = await stored(survivor);
        await waitFor(
          'the surviving instance storing alone',
          async () => (await stored(survivor)) >= before + STORED_ALONE,
          { timeoutMs: 60_000 },
        );
        await startInstance(index);
      }
      // The load goes on until the last instance restarted stores its share again.
      const restarted = instances[0];
      await waitFor(
        'the restarted instance storing',
        async () => (await stored(restarted)) >= STORED_BEFORE_KILL,
        {
          timeoutMs: 60_000,
        },
      );
    });
    console.log(`# ${sent.length} messages sent in ${Math.round((Date.now() - started) / 1000)} s, 3 kills`);
    assert.equal(kills.length, 3);
    await assertExact(sent);
    for (const app of instances) assert.equal((await fetch(`${app!.baseUrl}/health`)).status, 200);
  });

  it("stores every message exactly once, and exact aggregates, while RocketMQ's broker restarts", async () => {
    const storedByBoth = () => Promise.all(instances.map(stored));
    /** Both instances have stored `count` more messages than they had stored at `from`. */
    const bothStoring = async (what: string, from: number[], count: number) =>
      waitFor(what, async () => (await storedByBoth()).every((now, i) => now >= from[i] + count), {
        timeoutMs: 120_000,
      });
    let restartsDone = 0;
    const started = Date.now();
    const sent = await underLoad('broker', async () => {
      for (let restart = 0; restart < 2; restart++) {
        // Mid-stream: both instances store this run's load when the broker goes.
        await bothStoring('both instances storing', await storedByBoth(), STORED_BEFORE_KILL);
        await restartRocketMqBroker();
        restartsDone++;
      }
      // The load goes on until both instances store again after the last restart.
      await bothStoring('both instances storing after the restart', await storedByBoth(), STORED_BEFORE_KILL);
    });
    console.log(
      `# ${sent.length} messages sent in ${Math.round((Date.now() - started) / 1000)} s, 2 restarts`,
    );
    assert.equal(restartsDone, 2);
    await assertExact(sent);
    for (const app of instances) assert.equal((await fetch(`${app!.baseUrl}/health`)).status, 200);
  });
});
