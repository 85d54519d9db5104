/**
 * The fault suite: simulated devices send steadily through the whole chain (dmp-mqtt, dmp-kernel with
 * its rules, RocketMQ, dmp-data, ClickHouse) while one fault at a time hits it — an app killed with
 * `kill -9` and restarted, a server stopped or restarted. After each recovery, from ClickHouse and the
 * broker's acknowledgements: every message the broker acknowledged to a device is stored exactly once
 * or dead-lettered with a reason, and the 1-minute aggregates equal a recomputation from raw rows.
 * Prints a table: fault → accepted, stored, dead-lettered, duplicates, missing, recovery time.
 */
import { ClickHouseRepository } from '@dmp/clickhouse';
import {
  callAdminApi,
  freePort,
  readMinuteAggregates,
  recomputedFromRaw,
  restartRocketMqBroker,
  stack,
  stackScript,
  startApp,
  waitFor,
  type AppName,
  type RunningApp,
} from '@dmp/testing';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { DeviceFleet, type SentMessage } from '../tools/simulator/src/device-fleet';

const run = randomBytes(3).toString('hex');
const database = `dmp_test_faults_${run}`;
const prefix = `faults-${run}`;
const DEVICES = 100;
/** Change events per second, all devices together (plus a snapshot per device every 6 s). */
const RATE = 60;
/** Load before a fault and after its recovery, in acknowledged messages. */
const MESSAGES_AROUND_FAULT = 400;
const adminToken = `${prefix}-admin`;

interface FaultRow {
  fault: string;
  accepted: number;
  stored: number;
  deadLettered: number;
  duplicates: number;
  missing: number;
  recoverySeconds: number;
  /** A few missing messages: id, publish and PUBACK times in ms relative to the fault. */
  missingIds?: string[];
}

describe('the fault suite: every acknowledged message stored once or dead-lettered', () => {
  // DROP DATABASE waits for running merges: more than the default 30 s on a busy 2-core machine.
  const repository = new ClickHouseRepository({ ...stack.clickhouse, database, requestTimeoutMs: 180_000 });
  const apps = new Map<AppName, RunningApp>();
  const table: FaultRow[] = [];
  let kernelGrpc = '';

  const env: Record<AppName, () => Record<string, string>> = {
    'dmp-data': () => ({
      // A killed instance's messages come back after this long (the broker's lower bound).
      DATA_INVISIBLE_MS: '10000',
      DATA_AGGREGATION_LATENESS_MS: '0',
      DATA_AGGREGATION_INTERVAL_MS: '500',
      // A process killed with -9 held the aggregation lease: the next one aggregates after this long.
      DATA_AGGREGATION_LEASE_MS: '3000',
      DATA_INSERT_RETRY_MAX_MS: '2000',
    }),
    'dmp-kernel': () => ({ KERNEL_GRPC_URL: kernelGrpc }),
    'dmp-mqtt': () => ({
      KERNEL_GRPC_URL: kernelGrpc,
      // The same share group and client id after a restart: the broker kept the session's messages.
      MQTT_SHARE_GROUP: `faults${run}`,
      MQTT_CLIENT_ID: prefix,
      ADMIN_TOKEN: adminToken,
      MQTT_AUTH_HTTP_SECRET: randomBytes(24).toString('hex'),
    }),
  };
  let starts = 0;
  async function start(name: AppName): Promise<void> {
    const common = { CLICKHOUSE_DATABASE: database, OTEL_TRACES_SAMPLE_RATIO: '0.01', LOG_LEVEL: 'warn' };
    apps.set(
      name,
      await startApp(name, { ...common, ...env[name]() }, { label: `${prefix}-${name}-${starts++}` }),
    );
  }
  async function kill9(name: AppName): Promise<void> {
    await apps.get(name)!.stop('SIGKILL');
    await start(name);
  }
  /** Stops a server of the local stack for `downMs` (the outage is the fault), then brings it back. */
  async function outage(service: string, downMs: number): Promise<void> {
    await stackScript('down', service);
    await sleep(downMs);
    await stackScript('up', service);
  }

  const fleet = new DeviceFleet({
    url: stack.mqtt.url,
    devices: DEVICES,
    rate: RATE,
    deviceIdPrefix: prefix,
    timeCompression: 50,
    heartbeatIntervalMs: 0,
    protobufRatio: 0.2,
  });

  before(async () => {
    kernelGrpc = `127.0.0.1:${await freePort()}`;
    for (const name of ['dmp-data', 'dmp-kernel', 'dmp-mqtt'] as const) await start(name);
    const mqttApp = apps.get('dmp-mqtt')!;
    for (const device of fleet.devices) {
      const { status } = await callAdminApi(`${mqttApp.baseUrl}/admin/devices`, adminToken, 'POST', {
        deviceId: device.id,
        tenantId: 't-faults',
      });
      assert.ok(status < 300, `register ${device.id}: ${status}`);
    }
    await fleet.connect();
  });

  after(async () => {
    if (table.length > 0) console.table(table.map(({ missingIds: _ids, ...row }) => row));
    await fleet.close();
    await Promise.allSettled([...apps.values()].reverse().map((app) => app.stop()));
    const admin = repository.forDatabase('default');
    await admin.command(`DROP DATABASE IF EXISTS ${database}`);
    await Promise.all([admin.close(), repository.close()]);
  });

  const faults: { name: string; inject: () => Promise<void>; todo?: string }[] = [
    { name: 'dmp-mqtt kill -9', inject: () => kill9('dmp-mqtt') },
    { name: 'dmp-kernel kill -9', inject: () => kill9('dmp-kernel') },
    { name: 'dmp-data kill -9', inject: () => kill9('dmp-data') },
    { name: 'RocketMQ proxy restart', inject: restartRocketMqBroker },
    { name: 'ClickHouse stopped 2 min', inject: () => outage('clickhouse', 120_000) },
    { name: 'Redis stopped 1 min', inject: () => outage('redis', 60_000) },
    {
      name: 'MQTT broker restart',
      inject: () => outage('mosquitto', 0),
      // Known gap: in two runs 8 of 998 and 6 of 810 acknowledged messages were not stored, as many as
      // dmp-mqtt reported unacknowledged when the broker's connection closed. Mosquitto does resend a
      // persistent session's in-flight messages after a restart (checked on its own): the loss is in
      // how dmp-mqtt handles those redeliveries, not found yet.
      todo: 'the broker redelivers what was in flight to dmp-mqtt, and some of it is not stored',
    },
  ];

  for (const fault of faults)
    it(fault.name, { todo: fault.todo }, async () => {
      const from = Date.now();
      const abort = new AbortController();
      const acked = () => fleet.stats().acked;
      const load = fleet.run({ signal: abort.signal, flushTimeoutMs: 300_000 });
      try {
        const before = acked();
        await waitFor('load before the fault', () => acked() >= before + MESSAGES_AROUND_FAULT, {
          timeoutMs: 60_000,
          intervalMs: 100,
        });
        const injected = Date.now();
        await fault.inject();
        const recovered = acked();
        await waitFor('load after the recovery', () => acked() >= recovered + MESSAGES_AROUND_FAULT, {
          timeoutMs: 300_000,
          intervalMs: 200,
        });
        const recoverySeconds = Math.round((Date.now() - injected) / 100) / 10;
        abort.abort();
        await load;
        const settled = await settle(since(from));
        table.push({
          fault: fault.name,
          ...settled.row,
          recoverySeconds,
          missingIds: settled.missing
            .slice(0, 10)
            .map((m) => `${m.messageId} ${m.sentAt - injected}/${(m.ackedAt ?? 0) - injected}`),
        });
      } finally {
        abort.abort();
        await load;
      }
      const row = table.at(-1)!;
      assert.deepEqual(
        { duplicates: row.duplicates, missing: row.missing },
        { duplicates: 0, missing: 0 },
        `missing, with publish and PUBACK times relative to the fault: ${JSON.stringify(row.missingIds)}`,
      );
      for (const [name, app] of apps) assert.equal((await fetch(`${app.baseUrl}/health`)).status, 200, name);
    });

  /** The device messages of this phase the broker acknowledged (heartbeats are not forwarded). */
  function since(from: number): SentMessage[] {
    return [...fleet.ledger.values()]
      .flat()
      .filter((m) => m.sentAt >= from && m.messageId && m.ackedAt && !m.error);
  }

  /** Waits until every accepted message is stored or dead-lettered, then counts and checks aggregates. */
  async function settle(accepted: SentMessage[]): Promise<{
    row: Omit<FaultRow, 'fault' | 'recoverySeconds'>;
    missing: SentMessage[];
  }> {
    const devices = `device_id LIKE '${prefix}-%'`;
    // Counted here rather than with an IN list of ids: thousands of ids exceed the server's query size.
    const count = async () => {
      const rows = await repository.query<{ message_id: string }>(
        `SELECT message_id FROM telemetry_raw FINAL WHERE ${devices}`,
      );
      const dead = await repository.query<{ message_id: string }>(
        `SELECT DISTINCT source_message_id AS message_id FROM dead_letters FINAL WHERE ${devices}`,
      );
      const storedIds = new Set(rows.map((r) => r.message_id));
      const deadIds = new Set(dead.map((r) => r.message_id));
      const copies = new Map<string, number>();
      for (const r of rows) copies.set(r.message_id, (copies.get(r.message_id) ?? 0) + 1);
      const ours = accepted.map((m) => m.messageId!);
      return {
        stored: ours.filter((id) => storedIds.has(id)).length,
        rows: ours.reduce((sum, id) => sum + (copies.get(id) ?? 0), 0),
        deadLettered: ours.filter((id) => !storedIds.has(id) && deadIds.has(id)).length,
        missing: accepted.filter((m) => !storedIds.has(m.messageId!) && !deadIds.has(m.messageId!)),
      };
    };
    let counted: Awaited<ReturnType<typeof count>> = { stored: 0, rows: 0, deadLettered: 0, missing: [] };
    await waitFor(
      () =>
        `${accepted.length} accepted messages stored or dead-lettered (${counted.stored} stored, ${counted.deadLettered} dead-lettered)`,
      async () => {
        counted = await count();
        return counted.stored + counted.deadLettered >= accepted.length;
      },
      { timeoutMs: 300_000, intervalMs: 2_000 },
    ).catch(() => undefined); // what is missing is reported in the table, and asserted there
    counted = await count();

    const recomputed = await readMinuteAggregates(repository, recomputedFromRaw(devices), devices);
    let latest: unknown[] = [];
    await waitFor(
      () => `telemetry_1m equal to its recomputation (${latest.length} of ${recomputed.length} rows)`,
      async () =>
        JSON.stringify((latest = await readMinuteAggregates(repository, 'telemetry_1m FINAL', devices))) ===
        JSON.stringify(recomputed),
      { timeoutMs: 120_000, intervalMs: 1_000 },
    );
    return {
      row: {
        accepted: accepted.length,
        stored: counted.stored,
        deadLettered: counted.deadLettered,
        duplicates: counted.rows - counted.stored,
        missing: counted.missing.length,
      },
      missing: counted.missing,
    };
  }
});
