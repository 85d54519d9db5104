/**
 * DMP scaled out, on the local stack's ClickHouse cluster profile (2 shards × 2 replicas, brought up
 * here if it is not running, and only what this file started brought down again): two replicas of
 * every app — dmp-mqtt ×2 in one share group, dmp-kernel ×2 with both dmp-mqtt replicas' gRPC clients
 * balancing their calls over both (`ipv4:` target, round_robin), dmp-data ×2 in one consumer group,
 * one on each shard's first replica — under load from simulated devices. Mid-run, one replica of each
 * app is killed with `kill -9` and restarted, and one ClickHouse replica is stopped and started again.
 * Afterwards: every accepted message stored exactly once, the 1-minute aggregates equal to a
 * recomputation from raw rows, per-device order at RocketMQ, one trace per sampled message whichever
 * replicas handled it, the aggregation done by one dmp-data instance at a time, and every SQL block of
 * docs/analysts.md answering on the cluster as on a single node holding the same data.
 * Prints a table: phase → accepted, stored, duplicates, missing, recovery time.
 *
 * RocketMQ, Redis, Mosquitto and Jaeger are the default stack's (ROCKETMQ_ENDPOINTS, read by `stack`,
 * switches the broker). Own databases `dmp_test_scale_<run>` (cluster) and `dmp_test_scale_single_<run>`.
 */
import { applyMigrations, ClickHouseRepository, localTable, migrations, Tables } from '@dmp/clickhouse';
import { ALARM_EVENTS_TABLE, COMMANDS_TABLE, DEAD_LETTERS_TABLE } from '@dmp/contracts';
import { MultiTopicSimpleConsumer } from '@dmp/messaging';
import { DmpSampler, MetricsRegistry } from '@dmp/observability';
import {
  callAdminApi,
  CLUSTER_NAME,
  CLUSTER_SERVERS,
  clusterDown,
  clusterUp,
  createRocketmqResources,
  freePort,
  getJaegerTrace,
  inQueueOrder,
  readMetric,
  readMinuteAggregates,
  receivedTelemetry,
  recomputedFromRaw,
  silentClientLogger,
  stack,
  stackScript,
  startApp,
  waitFor,
  type AppName,
  type JaegerTrace,
  type MinuteAggregate,
  type ReceivedTelemetry,
  type RunningApp,
} from '@dmp/testing';
import { ROOT_CONTEXT, SpanKind } from '@opentelemetry/api';
import { SamplingDecision } from '@opentelemetry/sdk-trace';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { isDeepStrictEqual } from 'node:util';
import { MinuteAggregator } from '../apps/dmp-data/src/aggregation/aggregation.service';
import { loadDataConfig } from '../apps/dmp-data/src/config';
import { DeviceFleet, type SentMessage } from '../tools/simulator/src/device-fleet';
import { docsBlockNeeds, docsSql, storeAnalystsData } from './support/analysts-data';

const run = randomBytes(3).toString('hex');
const prefix = `scale-${run}`;
const database = `dmp_test_scale_${run}`;
const singleDatabase = `dmp_test_scale_single_${run}`;
/** The one RocketMQ every app uses (the default stack's, or ROCKETMQ_ENDPOINTS). */
const ROCKETMQ = { ROCKETMQ_ENDPOINTS: stack.rocketmq.endpoints };
/** The order observer's group: it keeps its offsets across runs (what earlier runs left is skipped). */
const OBSERVER_GROUP = 'dmp_scale_observer';
const DEVICES = 150;
/** Change events per second, all devices together (plus a snapshot per device every 6 s). */
const RATE = 50;
/** Load before a fault and after its recovery, in acknowledged messages. */
const MESSAGES_AROUND_FAULT = 300;
/** Every device message carries a traceparent; the apps sample this share of them (by trace id). */
const SAMPLE_RATIO = 0.02;
const AGGREGATION_INTERVAL_MS = 1_000;
const AGGREGATION_LEASE_MS = 8_000;
/**
 * Spans a process exports in batches (every second, each export taking a while on two busy cores): those
 * it ended this long before a kill -9 may be lost with it.
 */
const SPAN_EXPORT_MS = 5_000;
/**
 * Messages of a device sent this far apart take one dmp-mqtt replica after the other, not both at once:
 * on two busy cores one replica's hand-off lags the other's by up to ≈ 3 s (measured), with no fault.
 */
const ORDER_GAP_MS = 5_000;
const adminToken = `${prefix}-admin`;
const authSecret = randomBytes(24).toString('hex');

type Replica = `${AppName}-${'a' | 'b'}`;

/** The first row where two aggregate lists differ, for the failure message. */
function firstDifference(got: MinuteAggregate[], expected: MinuteAggregate[]): string {
  const i = expected.findIndex((e, n) => !isDeepStrictEqual(got[n], e));
  return i < 0 ? 'none' : `${JSON.stringify(got[i])} instead of ${JSON.stringify(expected[i])}`;
}
interface PhaseRow {
  phase: string;
  accepted: number;
  stored: number;
  deadLettered: number;
  duplicates: number;
  missing: number;
  recoverySeconds: number;
}

describe('DMP scaled out: two replicas of every app on a ClickHouse cluster', { timeout: 600_000 }, () => {
  const apps = new Map<Replica, RunningApp>();
  const kernelAddresses = { a: '', b: '' };
  const phases: { name: string; from: number; to: number; recoverySeconds: number }[] = [];
  /** When each app replica was killed with -9. */
  const kills: { replica: Replica; at: number; restarted: number }[] = [];
  const table: PhaseRow[] = [];
  const summary: Record<string, string | number> = {};
  let startedHere: string[] = [];
  let repository: ClickHouseRepository;
  let single: ClickHouseRepository;
  let accepted: SentMessage[] = [];

  const env = (replica: Replica): Record<string, string> => {
    const common = {
      ...ROCKETMQ,
      OTEL_TRACES_SAMPLE_RATIO: String(SAMPLE_RATIO),
      LOG_LEVEL: 'warn',
    };
    const side = replica.endsWith('-a') ? 'a' : 'b';
    if (replica.startsWith('dmp-data'))
      return {
        ...common,
        CLICKHOUSE_URL:
          side === 'a' ? CLUSTER_SERVERS['clickhouse-s1r1'] : CLUSTER_SERVERS['clickhouse-s2r1'],
        CLICKHOUSE_CLUSTER: CLUSTER_NAME,
        CLICKHOUSE_DATABASE: database,
        // The aggregator reads marks up to `now − timeout − 1 s`: converges sooner.
        CLICKHOUSE_REQUEST_TIMEOUT_MS: '10000',
        // A killed instance's messages come back after this long (the broker's lower bound).
        DATA_INVISIBLE_MS: '10000',
        DATA_INSERT_RETRY_MAX_MS: '2000',
        DATA_AGGREGATION_LATENESS_MS: '0',
        DATA_AGGREGATION_INTERVAL_MS: String(AGGREGATION_INTERVAL_MS),
        DATA_AGGREGATION_LEASE_MS: String(AGGREGATION_LEASE_MS),
      };
    if (replica.startsWith('dmp-kernel')) return { ...common, KERNEL_GRPC_URL: kernelAddresses[side] };
    return {
      ...common,
      // Both replicas' calls go to both kernels in turn.
      KERNEL_GRPC_URL: `ipv4:${kernelAddresses.a},${kernelAddresses.b}`,
      MQTT_SHARE_GROUP: `scale${run}`,
      // The same client id after a restart: the broker kept the session's messages.
      MQTT_CLIENT_ID: `${prefix}-${side}`,
      ADMIN_TOKEN: adminToken,
      MQTT_AUTH_HTTP_SECRET: authSecret,
    };
  };
  let starts = 0;
  async function start(replica: Replica): Promise<void> {
    const name = replica.slice(0, -2) as AppName;
    apps.set(replica, await startApp(name, env(replica), { label: `${prefix}-${replica}-${starts++}` }));
  }
  async function kill9(replica: Replica): Promise<void> {
    const at = Date.now();
    await apps.get(replica)!.stop('SIGKILL');
    await start(replica);
    kills.push({ replica, at, restarted: Date.now() });
  }
  const metric = (replica: Replica, name: string, labels: Record<string, string> = {}) =>
    readMetric(apps.get(replica)!.baseUrl, name, labels);
  const passes = (replica: Replica) => metric(replica, 'dmp_data_aggregation_passes_total');

  const fleet = new DeviceFleet({
    url: stack.mqtt.url,
    devices: DEVICES,
    rate: RATE,
    deviceIdPrefix: prefix,
    timeCompression: 50,
    heartbeatIntervalMs: 0,
    protobufRatio: 0.2,
    traceRatio: 1,
  });

  // Reads what the kernels produced through a group of its own (created in `before`), to check per-device order from the
  // queue offsets and pack positions (a device's messages all sit in one queue of each topic).
  const telemetryTopics = [stack.rocketmq.topics.event, stack.rocketmq.topics.snapshot];
  const observer = new MultiTopicSimpleConsumer({
    endpoints: stack.rocketmq.endpoints,
    namespace: stack.rocketmq.namespace,
    consumerGroup: OBSERVER_GROUP,
    subscriptions: new Map(telemetryTopics.map((topic) => [topic, '*'])),
    awaitDuration: 5_000, // the proxy long-polls at least 5 s
    logger: silentClientLogger,
  });
  const observed = new Map<string, ReceivedTelemetry[]>();
  /** When the observer first received each message id. */
  const observedAt = new Map<string, number>();
  let observing = true;
  /** Receives and acknowledges from both topics until `done()` (or idle that many receives in a row). */
  async function observe(keep: boolean, { done = () => !observing, idleReceives = Infinity } = {}) {
    const loop = async (topic: string) => {
      for (let idle = 0; idle < idleReceives && !done();) {
        const messages = await observer.receiveFrom(topic, 32, 60_000).catch(() => []);
        await Promise.all(messages.map((message) => observer.ack(message).catch(() => undefined)));
        idle = messages.length === 0 ? idle + 1 : 0;
        if (!keep) continue;
        for (const message of messages)
          for (const received of receivedTelemetry(message)) {
            if (!received.telemetry.deviceId.startsWith(`${prefix}-`)) continue;
            if (!observedAt.has(received.telemetry.messageId))
              observedAt.set(received.telemetry.messageId, Date.now());
            const key = `${message.topic} ${received.telemetry.deviceId}`;
            observed.set(key, [...(observed.get(key) ?? []), received]);
          }
      }
    };
    await Promise.all(telemetryTopics.flatMap((topic) => [1, 2].map(() => loop(topic))));
  }
  let observation: Promise<void> | undefined;

  before(async () => {
    startedHere = await clusterUp();
    repository = new ClickHouseRepository({
      ...stack.clickhouse,
      url: CLUSTER_SERVERS['clickhouse-s1r1'],
      database,
      cluster: CLUSTER_NAME,
      // DROP DATABASE … ON CLUSTER waits for every server.
      requestTimeoutMs: 180_000,
    });
    single = new ClickHouseRepository({
      ...stack.clickhouse,
      database: singleDatabase,
      requestTimeoutMs: 2_000,
    });
    kernelAddresses.a = `127.0.0.1:${await freePort()}`;
    kernelAddresses.b = `127.0.0.1:${await freePort()}`;
    // dmp-data a creates the schema on the cluster, then the others start.
    await start('dmp-data-a');
    await Promise.all((['dmp-data-b', 'dmp-kernel-a', 'dmp-kernel-b'] as const).map(start));
    await Promise.all((['dmp-mqtt-a', 'dmp-mqtt-b'] as const).map(start));
    for (const device of fleet.devices) {
      const { status } = await callAdminApi(
        `${apps.get('dmp-mqtt-a')!.baseUrl}/admin/devices`,
        adminToken,
        'POST',
        {
          deviceId: device.id,
          tenantId: 't-scale',
        },
      );
      assert.ok(status < 300, `register ${device.id}: ${status}`);
    }
    await createRocketmqResources({ groups: { [OBSERVER_GROUP]: 'concurrently' } });
    await observer.startup();
    // The group keeps what earlier runs left in the topics: skip it.
    await observe(false, { done: () => false, idleReceives: 2 });
    observation = observe(true);
    await fleet.connect();
  });

  after(async () => {
    if (table.length > 0) console.table(table);
    if (Object.keys(summary).length > 0) console.table(summary);
    observing = false;
    await observation?.catch(() => undefined);
    await observer.shutdown().catch(() => undefined);
    await fleet.close();
    await Promise.allSettled([...apps.values()].reverse().map((app) => app.stop()));
    // Whatever a failed step left stopped is started again before the database is dropped everywhere.
    await stackScript('up', '--cluster').catch(() => undefined);
    await repository
      ?.forDatabase('default')
      .command(`DROP DATABASE IF EXISTS ${database} ON CLUSTER ${CLUSTER_NAME}`)
      .catch(() => undefined);
    await single
      ?.forDatabase('default')
      .command(`DROP DATABASE IF EXISTS ${singleDatabase}`)
      .catch(() => undefined);
    await Promise.all([repository?.close(), single?.close()]);
    await clusterDown(startedHere);
  });

  let leaseBefore: { holder: Replica; other: Replica } | undefined;
  /** Who aggregated after the holder's kill -9, and the passes of both when it began. */
  let takeover: { by: Replica; passes: { a: number; b: number } } | undefined;

  it('runs the load through kill -9 of one replica of each app and a ClickHouse replica outage', async () => {
    const holderOf = async () => {
      const [a, b] = await Promise.all([passes('dmp-data-a'), passes('dmp-data-b')]);
      return { a, b };
    };
    const abort = new AbortController();
    const acked = () => fleet.stats().acked;
    const load = fleet.run({ signal: abort.signal, flushTimeoutMs: 300_000 });
    try {
      const firstPasses = await holderOf();
      const step = async (name: string, inject: () => Promise<void>) => {
        const from = Date.now();
        const before = acked();
        await waitFor(`load before: ${name}`, () => acked() >= before + MESSAGES_AROUND_FAULT, {
          timeoutMs: 60_000,
          intervalMs: 100,
        });
        const injected = Date.now();
        await inject();
        const recovered = acked();
        await waitFor(`load after: ${name}`, () => acked() >= recovered + MESSAGES_AROUND_FAULT, {
          timeoutMs: 180_000,
          intervalMs: 200,
        });
        phases.push({
          name,
          from,
          to: Date.now(),
          recoverySeconds: Math.round((Date.now() - injected) / 100) / 10,
        });
      };
      await step('steady', () => Promise.resolve());
      await step('dmp-mqtt-a kill -9', () => kill9('dmp-mqtt-a'));
      await step('dmp-kernel-a kill -9', () => kill9('dmp-kernel-a'));
      await step('clickhouse-s1r2 stopped 15 s', async () => {
        await stackScript('down', 'clickhouse-s1r2');
        await sleep(15_000);
        await stackScript('up', 'clickhouse-s1r2');
      });

      // Until now both dmp-data instances ran: one of them aggregated, the other did not.
      const lastPasses = await holderOf();
      const ran = { a: lastPasses.a - firstPasses.a, b: lastPasses.b - firstPasses.b };
      summary['aggregation passes before the dmp-data kill (a / b)'] = `${ran.a} / ${ran.b}`;
      assert.ok((ran.a === 0) !== (ran.b === 0), `passes of dmp-data a / b: ${ran.a} / ${ran.b}`);
      leaseBefore =
        ran.a > 0
          ? { holder: 'dmp-data-a', other: 'dmp-data-b' }
          : { holder: 'dmp-data-b', other: 'dmp-data-a' };
      const { holder, other } = leaseBefore;

      await step(`${holder} (aggregating) kill -9`, async () => {
        const otherBefore = await passes(other);
        const killed = Date.now();
        await kill9(holder);
        // Whichever takes the expired lease first: the other instance or the restarted one.
        const takenBy = await waitFor(
          'another dmp-data instance to take the aggregation over',
          async () =>
            ((await passes(other)) > otherBefore && other) || ((await passes(holder)) > 0 && holder),
          { timeoutMs: AGGREGATION_LEASE_MS + 30_000, intervalMs: 200 },
        );
        takeover = { by: takenBy, passes: { a: await passes('dmp-data-a'), b: await passes('dmp-data-b') } };
        summary['aggregation taken over after the kill -9 (s)'] =
          Math.round((Date.now() - killed) / 100) / 10;
        summary['aggregation taken over by'] = takenBy === holder ? `${holder} (restarted)` : takenBy;
      });
    } finally {
      abort.abort();
      await load;
      accepted = [...fleet.ledger.values()].flat().filter((m) => m.messageId && m.ackedAt && !m.error);
    }
    assert.ok(accepted.length >= 5 * 2 * MESSAGES_AROUND_FAULT, `${accepted.length} accepted`);
    for (const [replica, app] of apps)
      assert.equal((await fetch(`${app.baseUrl}/health`)).status, 200, `${replica} is healthy`);
  });

  it('stores every accepted message exactly once', async () => {
    assert.ok(accepted.length > 0, 'the load ran');
    const devices = `device_id LIKE '${prefix}-%'`;
    const count = async () => {
      const rows = await repository.query<{ message_id: string }>(
        `SELECT message_id FROM ${Tables.raw} FINAL WHERE ${devices}`,
      );
      const dead = await repository.query<{ message_id: string }>(
        `SELECT DISTINCT source_message_id AS message_id FROM ${DEAD_LETTERS_TABLE} FINAL WHERE ${devices}`,
      );
      const copies = new Map<string, number>();
      for (const r of rows) copies.set(r.message_id, (copies.get(r.message_id) ?? 0) + 1);
      return { copies, dead: new Set(dead.map((r) => r.message_id)) };
    };
    let counted = await count();
    await waitFor(
      () => `${accepted.length} accepted messages stored (${counted.copies.size} so far)`,
      async () => {
        counted = await count();
        return accepted.every((m) => counted.copies.has(m.messageId!) || counted.dead.has(m.messageId!));
      },
      { timeoutMs: 180_000, intervalMs: 2_000 },
    ).catch(() => undefined); // what is missing is reported in the table, and asserted below
    counted = await count();
    for (const phase of phases) {
      const ours = accepted.filter((m) => m.sentAt >= phase.from && m.sentAt < phase.to);
      const stored = ours.filter((m) => counted.copies.has(m.messageId!));
      table.push({
        phase: phase.name,
        accepted: ours.length,
        stored: stored.length,
        deadLettered: ours.filter((m) => !counted.copies.has(m.messageId!) && counted.dead.has(m.messageId!))
          .length,
        duplicates: stored.reduce((sum, m) => sum + counted.copies.get(m.messageId!)! - 1, 0),
        missing: ours.filter((m) => !counted.copies.has(m.messageId!) && !counted.dead.has(m.messageId!))
          .length,
        recoverySeconds: phase.recoverySeconds,
      });
    }
    const missing = accepted.filter((m) => !counted.copies.has(m.messageId!)).map((m) => m.messageId);
    const duplicated = [...counted.copies].filter(([, n]) => n > 1).map(([id]) => id);
    assert.deepEqual(
      { missing: missing.slice(0, 10), duplicated: duplicated.slice(0, 10) },
      { missing: [], duplicated: [] },
    );
    // Nothing but the accepted messages of these devices (each once).
    assert.equal(counted.copies.size, accepted.length);
  });

  it('spreads the work over both replicas of each app', async () => {
    // Counters restart with a process: the replicas not killed have counted since the start.
    const forwarded = await metric('dmp-mqtt-b', 'dmp_mqtt_forwarded_total');
    const ingested = await metric('dmp-kernel-b', 'dmp_kernel_messages_total', { outcome: 'accepted' });
    const [stored, storedByA] = await Promise.all([
      metric(leaseBefore?.other ?? 'dmp-data-b', 'dmp_clickhouse_insert_rows_total', { table: Tables.raw }),
      metric('dmp-data-a', 'dmp_clickhouse_insert_rows_total', { table: Tables.raw }),
    ]);
    Object.assign(summary, {
      'messages forwarded by dmp-mqtt-b': forwarded,
      'messages accepted by dmp-kernel-b': ingested,
      'raw rows inserted by the dmp-data not killed': stored,
      'raw rows inserted by dmp-data-a since its last start': storedByA,
    });
    for (const [what, n] of Object.entries({ forwarded, ingested, stored }))
      assert.ok(n > accepted.length / 10, `${what}: ${n} of ${accepted.length}`);
  });

  it('aggregates once per minute of data: only the lease holder, and equal to the raw rows', async () => {
    assert.ok(leaseBefore, 'the load ran');
    const devices = `device_id LIKE '${prefix}-%'`;
    const recomputed = await readMinuteAggregates(repository, recomputedFromRaw(devices), devices);
    let got: MinuteAggregate[] = [];
    await waitFor(
      () =>
        `telemetry_1m equal to its recomputation (${got.length} of ${recomputed.length} rows; first difference ${firstDifference(got, recomputed)})`,
      async () =>
        isDeepStrictEqual(
          (got = await readMinuteAggregates(repository, `${Tables.minute} FINAL`, devices)),
          recomputed,
        ),
      { timeoutMs: 120_000, intervalMs: 1_000 },
    );
    // From the takeover on, one instance ran every pass: it kept renewing the lease.
    assert.ok(takeover, 'the aggregation was taken over');
    const now = { a: await passes('dmp-data-a'), b: await passes('dmp-data-b') };
    const ran = { a: now.a - takeover.passes.a, b: now.b - takeover.passes.b };
    summary['aggregation passes after the takeover (a / b)'] = `${ran.a} / ${ran.b}`;
    const worker = takeover.by.endsWith('-a') ? 'a' : 'b';
    assert.ok(
      ran[worker] > 0 && ran[worker === 'a' ? 'b' : 'a'] === 0,
      `passes of a / b: ${ran.a} / ${ran.b}`,
    );
    assert.equal(await metric(takeover.by, 'dmp_data_aggregation_lease_held'), 1);
    const recomputedMinutes =
      (await metric('dmp-data-a', 'dmp_data_aggregation_minutes_total')) +
      (await metric('dmp-data-b', 'dmp_data_aggregation_minutes_total'));
    const [marked] = await repository.query<{ n: number }>(
      `SELECT uniqExact(device_id, minute) AS n FROM ${Tables.minute} FINAL WHERE ${devices}`,
    );
    summary['device-minutes of data / recomputed by the instances running now'] =
      `${marked.n} / ${recomputedMinutes}`;
  });

  it('keeps per-device order at RocketMQ', async () => {
    const sent = new Map(accepted.map((m) => [m.messageId!, m]));
    /** When a message was sent and acknowledged, relative to the kill before it. */
    const sentWhen = (messageId: string) => {
      const m = sent.get(messageId);
      const kill = kills.filter((k) => k.at <= (m?.sentAt ?? 0)).at(-1) ?? kills[0];
      return m && kill
        ? `sent ${m.sentAt - kill.at} ms, acked ${(m.ackedAt ?? 0) - kill.at} ms after ${kill.replica}'s kill`
        : 'not sent here';
    };
    await waitFor(
      () => `every stored message seen at RocketMQ (${observedAt.size} of ${accepted.length})`,
      () => accepted.every((m) => observedAt.has(m.messageId!)),
      { timeoutMs: 60_000, intervalMs: 500 },
    );
    // Mosquitto hands a shared subscription's messages to its members in turn, not by device as EMQX's
    // hash_clientid does: a device's messages sent close together take both dmp-mqtt replicas, in
    // parallel, and may swap. DMP keeps the order of what one replica received. So messages sent at least
    // ORDER_GAP_MS apart must keep their order — except while a kill holds one replica's messages back
    // and the other's overtake them: those the broker queued for a killed dmp-mqtt replica come on its
    // return, with what it gets behind them; the calls a dmp-mqtt replica had in flight to a killed
    // dmp-kernel replica are retried. Exempt: messages sent from a kill of either until every message
    // sent before the restart had reached RocketMQ.
    const windows = kills
      .filter((k) => k.replica.startsWith('dmp-mqtt') || k.replica.startsWith('dmp-kernel'))
      .map((k) => ({
        replica: k.replica,
        from: k.at - ORDER_GAP_MS,
        to: accepted
          .filter((m) => m.sentAt < k.restarted)
          .reduce((last, m) => Math.max(last, observedAt.get(m.messageId!) ?? 0), k.restarted),
      }));
    summary['kill to caught up (s)'] = windows
      .map((w) => `${w.replica} ${(w.to - w.from) / 1000}`)
      .join(', ');
    const heldBack = (m: SentMessage | undefined) =>
      m !== undefined && windows.some((w) => m.sentAt > w.from && m.sentAt < w.to);
    let swappedByBroker = 0;
    // At least once: a redelivered message may repeat, and a repeat is no reordering. Every first copy
    // must come in seq order.
    const outOfOrder = [...observed].flatMap(([key, list]) => {
      const seen = new Set<string>();
      const firsts = list.sort(inQueueOrder).filter((r) => {
        const first = !seen.has(r.telemetry.messageId);
        seen.add(r.telemetry.messageId);
        return first;
      });
      return firsts.flatMap((r, i) =>
        firsts.slice(0, i).flatMap((before) => {
          if ((r.telemetry.seq ?? -1) > (before.telemetry.seq ?? -1)) return [];
          const [early, late] = [sent.get(r.telemetry.messageId), sent.get(before.telemetry.messageId)];
          if (!early || !late || late.sentAt - early.sentAt < ORDER_GAP_MS || heldBack(early)) {
            swappedByBroker++;
            return [];
          }
          return [
            `${key}: seq ${r.telemetry.seq} (${sentWhen(r.telemetry.messageId)}) after seq ${before.telemetry.seq} (${sentWhen(before.telemetry.messageId)})`,
          ];
        }),
      );
    });
    summary['devices × topics checked for order'] = observed.size;
    summary['pairs swapped by the broker handing a device to both dmp-mqtt replicas'] = swappedByBroker;
    summary['pairs out of order otherwise'] = outOfOrder.length;
    assert.deepEqual(outOfOrder, []);
  });

  it('has one trace per sampled message, across whichever replicas handled it', async () => {
    const sampler = new DmpSampler(SAMPLE_RATIO);
    const traceIdOf = (m: SentMessage) => m.traceparent!.split('-')[1];
    const sampled = accepted.filter(
      (m) =>
        m.traceparent &&
        sampler.shouldSample(ROOT_CONTEXT, traceIdOf(m), 'receive', SpanKind.CONSUMER, {}, []).decision ===
          SamplingDecision.RECORD_AND_SAMPLED,
    );
    // A process killed with -9 loses the spans it had not exported yet: those of the messages in flight
    // around its kill — sent before it, and stored (their last span) after, or shortly before. A message
    // may be handled long after it was sent (a batch waiting in dmp-data, a call retried), so the time
    // it was stored decides, not the time it was sent.
    const storedAt = new Map(
      (
        await repository.query<{ message_id: string; at: string }>(
          `SELECT message_id, toString(max(toUInt64(inserted_at))) AS at FROM ${Tables.raw}
           WHERE message_id IN (${sampled.map((m) => `'${m.messageId!}'`).join(', ')}) GROUP BY message_id`,
        )
      ).map((r) => [r.message_id, Number(r.at) * 1_000 + 999]),
    );
    const inFlightAtKill = (m: SentMessage) =>
      kills.some(
        (k) => m.sentAt < k.at + 1_000 && (storedAt.get(m.messageId!) ?? Infinity) > k.at - SPAN_EXPORT_MS,
      );
    const checked = sampled.filter((m) => !inFlightAtKill(m));
    assert.ok(checked.length >= 20, `${checked.length} sampled messages to check`);
    const services = ['dmp-data', 'dmp-kernel', 'dmp-mqtt'];
    const instances = new Map<string, Set<string>>(services.map((s) => [s, new Set()]));
    const complete = (trace: JaegerTrace | undefined) => {
      const spans = trace?.spans ?? [];
      const of = (service: string) =>
        spans
          .filter((span) => trace!.processes[span.processID]?.serviceName === service)
          .map((s) => s.operationName);
      return (
        trace !== undefined &&
        of('dmp-mqtt').some((name) => name.startsWith('process devices/')) &&
        of('dmp-kernel').some((name) => name === 'process kernel.ingest') &&
        of('dmp-data').some((name) => name === `INSERT ${Tables.raw}`)
      );
    };
    const pending = new Map(checked.map((m) => [traceIdOf(m), m]));
    /** What Jaeger has of each pending trace: its services, for the failure message. */
    const seen = new Map<string, string[]>();
    const diagnose = (traceId: string) => {
      const m = pending.get(traceId)!;
      const kill = kills.reduce((near, k) =>
        Math.abs(k.at - m.sentAt) < Math.abs(near.at - m.sentAt) ? k : near,
      );
      return `${m.messageId} (sent ${m.sentAt - kill.at} ms, stored ${(storedAt.get(m.messageId!) ?? NaN) - kill.at} ms after ${kill.replica}'s kill; spans of ${seen.get(traceId)?.join('+') || 'none'})`;
    };
    await waitFor(
      () =>
        `${pending.size} of ${checked.length} sampled messages with a complete trace in Jaeger: ` +
        [...pending.keys()].slice(0, 5).map(diagnose).join('; '),
      async () => {
        for (const traceId of [...pending.keys()]) {
          const trace = await getJaegerTrace(traceId);
          seen.set(traceId, [
            ...new Set(trace?.spans.map((span) => trace.processes[span.processID]?.serviceName ?? '?')),
          ]);
          if (!complete(trace)) continue;
          pending.delete(traceId);
          for (const span of trace!.spans) {
            const process = trace!.processes[span.processID];
            const instance = process?.tags?.find((t) => t.key === 'service.instance.id')?.value;
            if (process && instance !== undefined)
              instances.get(process.serviceName)?.add(JSON.stringify(instance));
            assert.equal(span.traceID, traceId);
          }
        }
        return pending.size === 0;
      },
      { timeoutMs: 60_000, intervalMs: 2_000 },
    );
    summary['sampled messages / traces checked (others in flight at a kill -9)'] =
      `${sampled.length} / ${checked.length}`;
    for (const service of services) {
      summary[`${service} instances seen in those traces`] = instances.get(service)!.size;
      // Both replicas, and the restarted one's new process (dmp-data's is restarted last: ≥ 2).
      assert.ok(instances.get(service)!.size >= 2, `${service}: ${[...instances.get(service)!].join(', ')}`);
    }
  });

  it('answers every query of docs/analysts.md on the cluster as a single node does with the same data', async () => {
    // The page's own data set, stored on the cluster as dmp-data stores it; the running instances
    // aggregate it. Then everything on the cluster is copied to a single node, aggregated there.
    const config = loadDataConfig({
      CLICKHOUSE_CLUSTER: CLUSTER_NAME,
      DATA_BATCH_MAX_WAIT_MS: '50',
      DATA_CLEAN_MAX_AGE_MS: '0',
      DATA_CLEAN_METRIC_RANGES: '{"hum": [0, 100]}',
    });
    await storeAnalystsData(repository, config);
    // The kernels still run: a sent command expires on their timer, and a duration rule (door open too
    // long, 2 min) raises on it and sends a command up to two minutes after the last message. Stop the
    // kernels so that none comes after, and wait until what they published is stored (the table
    // unchanged over three reads): both copies then hold the same commands, open ones included.
    const commandsNow = async () =>
      (
        await repository.query<{ n: string; open: string; last: string }>(
          `SELECT count() AS n, countIf(state IN ('queued', 'sent')) AS open, max(version) AS last
           FROM ${COMMANDS_TABLE} FINAL`,
        )
      )[0];
    for (const replica of ['dmp-kernel-a', 'dmp-kernel-b'] as const) await apps.get(replica)?.stop();
    const seen: string[] = [];
    await waitFor(
      'the commands table unchanged over three reads, the kernels stopped',
      async () => {
        seen.push(JSON.stringify(await commandsNow()));
        return seen.length >= 3 && seen.slice(-3).every((s) => s === seen.at(-1));
      },
      { timeoutMs: 60_000, intervalMs: 1_000 },
    );
    const all = '1 = 1';
    const onCluster = await waitFor(
      'telemetry_1m on the cluster equal to its recomputation',
      async () => {
        const [got, expected] = await Promise.all([
          readMinuteAggregates(repository, `${Tables.minute} FINAL`, all),
          readMinuteAggregates(repository, recomputedFromRaw(all), all),
        ]);
        return isDeepStrictEqual(got, expected) && got;
      },
      { timeoutMs: 120_000, intervalMs: 1_000 },
    );

    await applyMigrations(single, migrations);
    const shards = `'${[CLUSTER_SERVERS['clickhouse-s1r1'], CLUSTER_SERVERS['clickhouse-s2r1']]
      .map((url) => `127.0.0.1:${Number(new URL(url).port) + 1000}`)
      .join(',')}'`;
    // Every sharded table but those the aggregation derives from telemetry_raw: a table added later
    // is copied too.
    const derived: string[] = [Tables.minute, Tables.minuteMarks, Tables.minuteSource];
    const sharded = await repository.query<{ name: string }>(
      `SELECT name FROM system.tables WHERE database = '${database}' AND engine = 'Distributed'`,
    );
    assert.ok(
      sharded.some((t) => t.name === ALARM_EVENTS_TABLE),
      JSON.stringify(sharded),
    );
    for (const { name: t } of sharded.filter((t) => !derived.includes(t.name)))
      await single.command(`INSERT INTO ${t} SELECT * FROM remote(${shards}, ${database}, ${localTable(t)})`);
    await single.command(
      `INSERT INTO ${Tables.minuteMarks} (device_id, minute) SELECT DISTINCT device_id, toStartOfMinute(ts) FROM ${Tables.raw}`,
    );
    const aggregator = new MinuteAggregator(
      single,
      loadDataConfig({ DATA_AGGREGATION_LATENESS_MS: '0' }),
      new MetricsRegistry('scale-single-node'),
    );
    await waitFor(
      'telemetry_1m on the single node equal to the cluster',
      async () => {
        await aggregator.runOnce();
        return isDeepStrictEqual(
          await readMinuteAggregates(single, `${Tables.minute} FINAL`, all),
          onCluster,
        );
      },
      { timeoutMs: 60_000, intervalMs: 1_000 },
    );

    // Numbers to 10 significant digits: shards add up floats in another order.
    const normalized = (rows: Record<string, unknown>[]) =>
      rows.map((row) =>
        JSON.stringify(row, (_, v: unknown) => (typeof v === 'number' ? Number(v.toPrecision(10)) : v)),
      );
    /**
     * The state of storage itself — parts, the aggregator's log, versions not merged yet (a table
     * counted with and without FINAL): the cluster's differs by design.
     */
    const operational = (sql: string) => {
      const reads = [...sql.matchAll(/FROM (\w+)( FINAL)?/g)];
      const unmerged = reads.some(([, t, final]) => !final && reads.some(([, u, f]) => u === t && f));
      return unmerged || /system\.|telemetry_1m_marks|telemetry_1m_progress/.test(sql);
    };
    let compared = 0;
    for (const sql of await docsSql()) {
      if (docsBlockNeeds(sql)) continue; // newer servers only
      const run = (on: ClickHouseRepository, where: string) =>
        on.query<Record<string, unknown>>(sql).catch((error: unknown) => {
          throw new Error(`docs/analysts.md block failed on the ${where}:\n${sql}\n${String(error)}`);
        });
      const [cluster, node] = await Promise.all([run(repository, 'cluster'), run(single, 'single node')]);
      if (operational(sql)) continue;
      const ordered = /ORDER BY/i.test(sql);
      const [a, b] = [normalized(cluster), normalized(node)].map((r) => (ordered ? r : r.sort()));
      assert.ok(a.length > 0, `no rows from:\n${sql}`);
      assert.deepEqual(a, b, `different answers on the cluster and on one node:\n${sql}`);
      compared++;
    }
    summary['docs/analysts.md queries answering the same'] = compared;
    assert.ok(compared >= 10);
  });
});
