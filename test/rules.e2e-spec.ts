/**
 * The rule engine end to end, against the real local stack: dmp-kernel and dmp-data run as real
 * processes; the test calls the kernel's gRPC Ingest like dmp-mqtt does, registers its devices in Redis
 * like dmp-mqtt's registry does, subscribes to device command topics on the MQTT broker, receives
 * webhooks on a local HTTP server, reads routed messages from RocketMQ and alarms from ClickHouse (its own
 * database, dropped at the end). Own topics and groups (`dmp_rules_test_*`, scripts/stack/rocketmq-*.txt),
 * so a running pipeline does not interfere; its own rules directory (a temporary copy it edits).
 */
import { ClickHouseRepository, stringList } from '@dmp/clickhouse';
import { type AlarmEvent, deviceCommandTopic, type TelemetryRequest } from '@dmp/contracts';
import { MultiTopicSimpleConsumer } from '@dmp/messaging';
import {
  drainReceived,
  dropDatabaseInBackground,
  readMetric,
  REPO_ROOT,
  silentClientLogger,
  stack,
  waitFor,
  type RunningApp,
} from '@dmp/testing';
import { Redis } from 'ioredis';
import mqtt, { type MqttClient } from 'mqtt';
import { execFile } from 'node:child_process';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtemp, rename, rm, writeFile } from 'node:fs/promises';
import type { IncomingHttpHeaders } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { promisify } from 'node:util';
import type { MessageView } from 'rocketmq-client-nodejs';
import type { AggregateExplanation, AlarmExplanation } from '../tools/cli/src/commands/explain';
import type { BacktestReport } from '../tools/cli/src/commands/rules';
import {
  createPipelineResources,
  deleteKeys,
  pipelineNames,
  registerDevice as registerInRegistry,
  startHookReceiver,
  startPipeline,
  type HookReceiver,
  type Pipeline,
} from './support/rule-pipeline';

const names = pipelineNames('rules');
const { run, database } = names;
const ADMIN_TOKEN = `rules-e2e-${run}-admin-token`;
/** The kernel's own Redis keys (state, alarms, outbox) under a namespace of this run. */
const NAMESPACE = names.namespace;
const TOPICS = { ...names.topics, route: 'dmp_rules_test_route' };
const ROUTE_GROUP = 'dmp_rules_test_route';
const exec = promisify(execFile);

const dev = (name: string) => `rules-${run}-${name}`;
const PRODUCT = `thermo-${run}`;
const TENANT = `tenant-${run}`;

/** The test's rule set: short durations; the webhook points at the test's own HTTP server. */
function ruleFiles(webhookUrl: string): Record<string, string> {
  return {
    'alarms.yaml': `rules:
  - id: hot
    name: Too hot
    when: state.latest.temperature > 30.0
    clear: state.latest.temperature < 28.0
    for: 2s
    actions:
      - alarm:
          severity: major
          message: 'Temperature {{ state.latest.temperature }} °C on {{ device.id }} at {{ device.siteId }}'
`,
    'linkage.yaml': `rules:
  - id: door-light
    when: msg.metrics.door_open == true
    actions:
      - command: { name: light.set, params: { on: true, zone: '{{ device.tags.zone }}' } }
      - command: { name: light.set, params: { on: false }, on: clear }
  - id: battery-low
    when: state.latest.voltage < 2.9
    clear: state.latest.voltage > 3.0
    actions:
      - webhook:
          url: ${webhookUrl}
          headers: { X-Team: '\${secret:TEAM}' }
          params: { voltage: '{{ state.latest.voltage }}' }
`,
    'routing.yaml': `rules:
  - id: route-load
    when: has(msg.metrics.load_seq)
    actions:
      - route: { topic: ${TOPICS.route} }
`,
    'products/thermo.yaml': `products:
  - id: ${PRODUCT}
    metrics:
      temperature: { from: temp_f, convert: °F→°C, decimals: 2 }
      voltage: { from: batt_mv, convert: mV→V }
`,
  };
}

let messageCounter = 0;
function telemetry(
  deviceId: string,
  metrics: Record<string, number | boolean | string>,
  extra: Partial<TelemetryRequest> = {},
): TelemetryRequest {
  const now = Date.now();
  return {
    deviceId,
    messageId: `${deviceId}-m${++messageCounter}`,
    kind: 'KIND_TELEMETRY',
    ts: now,
    receivedAt: now,
    metrics: Object.fromEntries(
      Object.entries(metrics).map(([k, v]) => [
        k,
        typeof v === 'number' ? { number: v } : typeof v === 'boolean' ? { flag: v } : { text: v },
      ]),
    ),
    ...extra,
  };
}

interface ReceivedHook {
  headers: IncomingHttpHeaders;
  body: { event: string; deliveryId: string; ruleId: string; deviceId: string; params: { voltage: number } };
  status: number;
}

describe('rules end to end', { timeout: 300_000 }, () => {
  let pipeline: Pipeline | undefined;
  let kernel: RunningApp | undefined;
  let rulesDir: string;
  let files: Record<string, string>;
  const redis = new Redis(stack.redis.url, { lazyConnect: true });
  const clickhouse = new ClickHouseRepository({ ...stack.clickhouse, database });
  let device: MqttClient;
  const commands: { topic: string; payload: Record<string, unknown>; traceparent?: string }[] = [];
  let hookReceiver: HookReceiver | undefined;
  const hooks: ReceivedHook[] = [];
  /** The webhook receiver answers 503 to the first attempts of each delivery, then 200. */
  const failuresPerDelivery = 2;
  const routeObserver = new MultiTopicSimpleConsumer({
    endpoints: stack.rocketmq.endpoints,
    namespace: stack.rocketmq.namespace,
    consumerGroup: ROUTE_GROUP,
    subscriptions: new Map([[TOPICS.route, '*']]),
    awaitDuration: 5_000,
    logger: silentClientLogger,
  });
  const routed: MessageView[] = [];
  let observing = true;
  let observerLoop: Promise<void> | undefined;

  const admin = (method: string, path: string, body?: unknown, token = ADMIN_TOKEN) =>
    fetch(`${kernel!.baseUrl}${path}`, {
      method,
      headers: { authorization: `Bearer ${token}`, ...(body ? { 'content-type': 'application/json' } : {}) },
      ...(body ? { body: JSON.stringify(body) } : {}),
    });
  const ingest = (messages: TelemetryRequest[]) => pipeline!.ingest(messages);
  const ingestAccepted = async (messages: TelemetryRequest[]) => {
    const outcomes = await ingest(messages);
    assert.deepEqual(
      outcomes.filter((o) => !o.accepted),
      [],
      'every message accepted',
    );
  };
  const openAlarms = async (deviceId: string) => {
    const response = await admin('GET', `/alarms?deviceId=${deviceId}`);
    assert.equal(response.status, 200);
    return ((await response.json()) as { alarms: { id: string; ruleId: string; state: string }[] }).alarms;
  };
  const registerDevice = async (
    deviceId: string,
    fields: { productId?: string; siteId?: string; tags?: object },
  ) =>
    registerInRegistry(redis, deviceId, {
      tenantId: TENANT,
      productId: fields.productId ?? PRODUCT,
      siteId: fields.siteId ?? 'plant-a',
      tags: fields.tags ?? { zone: 'north' },
    });

  before(async () => {
    await createPipelineResources(names, {
      topics: { [TOPICS.route]: 'FIFO' },
      groups: { [ROUTE_GROUP]: 'orderly' },
    });
    await redis.connect();
    hookReceiver = await startHookReceiver((text, headers) => {
      const body = JSON.parse(text) as ReceivedHook['body'];
      const attempts = hooks.filter((h) => h.body.deliveryId === body.deliveryId).length;
      const status = attempts < failuresPerDelivery ? 503 : 200;
      hooks.push({ headers, body, status });
      return status;
    });
    files = ruleFiles(`${hookReceiver.url}/hooks/battery`);

    device = await mqtt.connectAsync(stack.mqtt.url, {
      protocolVersion: 5,
      clientId: `rules-e2e-${run}`,
      clean: true,
    });
    device.on('message', (topic, payload, packet) => {
      if (!topic.startsWith(`devices/rules-${run}-`)) return;
      const traceparent = packet.properties?.userProperties?.traceparent;
      commands.push({
        topic,
        payload: JSON.parse(payload.toString()) as Record<string, unknown>,
        ...(typeof traceparent === 'string' ? { traceparent } : {}),
      });
    });
    await device.subscribeAsync('devices/+/command', { qos: 1 });

    // While the apps start (below): nothing is routed before the tests send.
    const observerReady = (async () => {
      await routeObserver.startup();
      // Drain leftovers of earlier runs (and give a new group its offsets) before anything is routed.
      await drainReceived(
        () => routeObserver.receiveFrom(TOPICS.route, 32, 10_000),
        (view) => routeObserver.ack(view),
      );
      observerLoop = (async () => {
        while (observing) {
          const views = await routeObserver.receiveFrom(TOPICS.route, 32, 10_000).catch(() => []);
          routed.push(...views);
          await Promise.all(views.map((view) => routeObserver.ack(view).catch(() => undefined)));
        }
      })();
    })();
    observerReady.catch(() => undefined); // awaited below, once the apps are up

    pipeline = await startPipeline(names, {
      rules: files,
      data: { ALARM_BATCH_MAX_WAIT_MS: '50' },
      kernel: {
        KERNEL_RULES_WATCH_DEBOUNCE_MS: '100',
        KERNEL_ALARM_SWEEP_MS: '100',
        KERNEL_WEBHOOK_RETRY_BASE_MS: '100',
        KERNEL_WEBHOOK_SECRETS: JSON.stringify({ TEAM: 'operations' }),
        KERNEL_WEBHOOK_ALLOW_NETWORKS: '127.0.0.1/32', // the test's receiver is on loopback
        ADMIN_TOKEN,
      },
    });
    ({ kernel, rulesDir } = pipeline);
    await observerReady;
    console.log(
      `rules e2e: run ${run}, database ${database}, rules ${rulesDir}, logs .stack/logs/tests/rules-${run}-*.log`,
    );
  });

  after(async () => {
    await pipeline?.stop();
    observing = false;
    await observerLoop;
    await routeObserver.shutdown().catch(() => undefined);
    await device?.endAsync().catch(() => undefined);
    hookReceiver?.close();
    await deleteKeys(redis, `dmp:device:rules-${run}-*`, `${NAMESPACE}:*`);
    await redis.quit();
    dropDatabaseInBackground(database);
    await clickhouse.close();
  });

  it('enriches telemetry with device metadata and normalizes it by its product model', async () => {
    const id = dev('normalize');
    await registerDevice(id, { siteId: 'plant-n', tags: { zone: 'south' } });
    await ingestAccepted([telemetry(id, { temp_f: 71.6, batt_mv: 3300, rssi: -70 })]);
    const row = await waitFor(
      'the normalized row in telemetry_raw',
      async () =>
        (
          await clickhouse
            .query<{
              tenant_id: string;
              product_id: string;
              site_id: string;
              metric_names: string[];
              metric_values: number[];
            }>(
              `SELECT tenant_id, product_id, site_id, metric_names, metric_values FROM telemetry_raw WHERE device_id = '${id}'`,
            )
            .catch(() => [])
        )[0],
      { timeoutMs: 60_000 },
    );
    assert.deepEqual([row.tenant_id, row.product_id, row.site_id], [TENANT, PRODUCT, 'plant-n']);
    const metrics = Object.fromEntries(
      row.metric_names.map((name, i) => [name, Number(row.metric_values[i])]),
    );
    assert.deepEqual(metrics, { rssi: -70, temperature: 22, voltage: 3.3 });
  });

  it('raises an alarm once its condition held for its duration, holds it, acknowledges it, clears it', async () => {
    const id = dev('hot');
    await registerDevice(id, { siteId: 'plant-h' });
    const sentAt = Date.now();
    await ingestAccepted([telemetry(id, { temp_f: 95 })]); // 35 °C
    const [pending] = await waitFor('a pending alarm', async () => {
      const open = await openAlarms(id);
      return open.length === 1 && open[0].state === 'pending' && open;
    });
    assert.equal(pending.ruleId, 'hot');
    // No further message: the timer raises it 2 s after the condition started to hold, not before.
    const active = await waitFor(
      'the alarm raised by its timer',
      async () => (await openAlarms(id)).find((a) => a.state === 'active'),
      { timeoutMs: 15_000, intervalMs: 100 },
    );
    assert.ok(Date.now() - sentAt >= 2_000, 'raised only after its 2 s duration');
    assert.equal(active.id, pending.id);

    // Between the thresholds (29.5 °C): still raised — the clear threshold is 28 °C.
    await ingestAccepted([telemetry(id, { temp_f: 85.1 })]);
    await sleep(1_000);
    assert.equal((await openAlarms(id))[0]?.state, 'active');

    assert.equal(
      (await admin('POST', `/alarms/${active.id}/ack`, { by: 'e2e' }, 'wrong-token-1234567890')).status,
      401,
    );
    const ack = await admin('POST', `/alarms/${active.id}/ack`, { by: 'e2e' });
    assert.equal(ack.status, 200);
    const acknowledged = (await ack.json()) as AlarmEvent;
    assert.deepEqual([acknowledged.state, acknowledged.acknowledgedBy], ['acknowledged', 'e2e']);
    assert.equal(
      (await admin('POST', `/alarms/${active.id}/ack`, { by: 'e2e' })).status,
      409,
      'acknowledged once',
    );
    assert.equal((await admin('POST', `/alarms/alm-unknown-${run}/ack`, {})).status, 404);

    await ingestAccepted([telemetry(id, { temp_f: 80 })]); // 26.7 °C
    await waitFor('the alarm cleared', async () => (await openAlarms(id)).length === 0);

    // Every transition on its way through RocketMQ and dmp-data into ClickHouse.
    const events = await waitFor(
      'the four alarm events in ClickHouse',
      async () => {
        const rows = await clickhouse
          .query<{ transition: string; state: string; version: string }>(
            `SELECT transition, state, version FROM alarm_events FINAL WHERE alarm_id = '${active.id}' ORDER BY version`,
          )
          .catch(() => []);
        return rows.length === 4 && rows;
      },
      { timeoutMs: 30_000 },
    );
    assert.deepEqual(
      events.map((e) => [e.transition, e.state, Number(e.version)]),
      [
        ['pending', 'pending', 1],
        ['raised', 'active', 2],
        ['acknowledged', 'acknowledged', 3],
        ['cleared', 'cleared', 4],
      ],
    );
    // dmp-data writes alarm_events, then alarms: wait for the latter too.
    const alarm = await waitFor('the cleared alarm in ClickHouse', async () => {
      const [row] = await clickhouse.query<Record<string, string>>(
        `SELECT state, severity, rule_id, acknowledged_by, started_at_ms, raised_at_ms, cleared_at_ms, message, site_id, version
         FROM alarms FINAL WHERE alarm_id = '${active.id}'`,
      );
      return Number(row?.version) === 4 && row;
    });
    assert.deepEqual(
      [
        alarm.state,
        alarm.severity,
        alarm.rule_id,
        alarm.acknowledged_by,
        Number(alarm.version),
        alarm.site_id,
      ],
      ['cleared', 'major', 'hot', 'e2e', 4, 'plant-h'],
    );
    assert.equal(
      Number(alarm.raised_at_ms) - Number(alarm.started_at_ms),
      2_000,
      'raised exactly 2 s after it started',
    );
    assert.ok(Number(alarm.cleared_at_ms) > Number(alarm.raised_at_ms));
    assert.equal(alarm.message, `Temperature 35 °C on ${id} at plant-h`);
    assert.ok(
      (await readMetric(kernel!.baseUrl, 'dmp_kernel_alarms_total', {
        transition: 'raised',
        severity: 'major',
      })) >= 1,
    );
  });

  it('explains an alarm with the CLI: the messages, inputs, rule text and version, and traces of each transition', async () => {
    const id = dev('explain');
    await registerDevice(id, { siteId: 'plant-x' });
    const traceparent = (traceId: string) => `00-${traceId}-${randomBytes(8).toString('hex')}-01`;
    const [hotTrace, coolTrace] = [randomBytes(16).toString('hex'), randomBytes(16).toString('hex')];
    const hot = telemetry(id, { temp_f: 95 }, { traceparent: traceparent(hotTrace) }); // 35 °C
    await ingestAccepted([hot]);
    const active = await waitFor(
      'the alarm raised by its timer',
      async () => (await openAlarms(id)).find((a) => a.state === 'active'),
      { timeoutMs: 15_000, intervalMs: 100 },
    );
    const cool = telemetry(id, { temp_f: 80 }, { traceparent: traceparent(coolTrace) }); // 26.7 °C
    await ingestAccepted([cool]);
    await waitFor('the alarm cleared', async () => (await openAlarms(id)).length === 0);
    const { version } = (await (await admin('GET', '/rules')).json()) as { version: string };
    await waitFor(
      'the cleared alarm and both messages in ClickHouse',
      async () => {
        const [alarm] = await clickhouse
          .query<{ version: string }>(`SELECT version FROM alarms FINAL WHERE alarm_id = '${active.id}'`)
          .catch(() => []);
        const [raw] = await clickhouse
          .query<{ n: string }>(`SELECT count() AS n FROM telemetry_raw FINAL WHERE device_id = '${id}'`)
          .catch(() => []);
        return Number(alarm?.version) === 3 && Number(raw?.n) === 2;
      },
      { timeoutMs: 30_000 },
    );

    const cli = (...args: string[]) =>
      exec(
        process.execPath,
        [join(REPO_ROOT, 'dist/tools/cli/src/main.js'), ...args, '--database', database],
        {
          env: { ...process.env, JAEGER_UI_URL: 'http://jaeger.example:16686' },
        },
      );
    const report = JSON.parse(
      (await cli('explain', 'alarm', active.id, '--json')).stdout,
    ) as AlarmExplanation;
    assert.deepEqual(
      [report.alarmId, report.deviceId, report.ruleId, report.state],
      [active.id, id, 'hot', 'cleared'],
    );
    const [pending, raised, cleared] = report.transitions;
    assert.deepEqual(
      report.transitions.map((t) => [t.version, t.transition, t.messageId, t.rulesetVersion]),
      [
        [1, 'pending', hot.messageId, version],
        [2, 'raised', '', version], // the timer raised it: no message
        [3, 'cleared', cool.messageId, version],
      ],
    );
    // The values the conditions read are those of the messages as stored.
    const stored = (t: (typeof report.transitions)[number]) => t.telemetry?.metrics.temperature;
    assert.equal(typeof stored(pending), 'number');
    assert.deepEqual(pending.inputs, { 'state.latest.temperature': stored(pending) });
    assert.deepEqual(raised.inputs, { 'state.latest.temperature': stored(pending) });
    assert.deepEqual(cleared.inputs, { 'state.latest.temperature': stored(cleared) });
    assert.ok(Number(stored(pending)) > 30 && Number(stored(cleared)) < 28);
    // Decided in the traces of the messages that drove them; the timer's raise in a trace of its own.
    assert.deepEqual(
      [pending.traceId, cleared.traceId, cleared.traceUrl],
      [hotTrace, coolTrace, `http://jaeger.example:16686/trace/${coolTrace}`],
    );
    assert.match(raised.traceId, /^[0-9a-f]{32}$/);
    assert.notEqual(raised.traceId, hotTrace);
    assert.equal(report.rules.length, 1);
    assert.equal(report.rules[0].rulesetVersion, version);
    assert.match(
      report.rules[0].text,
      /^ {2}- id: hot\n {4}name: Too hot\n {4}when: state\.latest\.temperature > 30\.0\n/,
    );

    const table = (await cli('explain', 'alarm', active.id)).stdout;
    assert.match(table, new RegExp(`v1 pending .*rule set ${version}`));
    assert.match(table, new RegExp(`inputs {3}state\\.latest\\.temperature = ${stored(cleared)}`));
    assert.match(table, new RegExp(`trace {4}${hotTrace}`));
  });

  it('explains a per-minute aggregate with the CLI: raw rows, recomputation, late rows, dead letters', async () => {
    const id = dev('explain-minute');
    await registerDevice(id, {});
    const minute = Math.floor((Date.now() - 10 * 60_000) / 60_000) * 60_000; // ten minutes ago
    const a = telemetry(id, { temp_f: 77 }, { ts: minute + 5_000 });
    const b = telemetry(id, { temp_f: 86 }, { ts: minute + 20_000 });
    // Beyond DATA_CLEAN_MAX_ABS_VALUE: storage refuses it, a dead letter received in that minute.
    const refused = telemetry(id, { temp_f: 1e18 }, { ts: minute + 30_000, receivedAt: minute + 30_000 });
    await ingestAccepted([a, b, refused]);
    await waitFor(
      'the two rows, the dead letter and the aggregate in ClickHouse',
      async () => {
        const [row] = await clickhouse
          .query<{ raw: string; letters: string; aggregates: string }>(
            `SELECT
               (SELECT count() FROM telemetry_raw FINAL WHERE device_id = '${id}') AS raw,
               (SELECT count() FROM dead_letters FINAL WHERE device_id = '${id}') AS letters,
               (SELECT count() FROM telemetry_1m FINAL WHERE device_id = '${id}' AND metric = 'temperature') AS aggregates`,
          )
          .catch(() => []);
        return Number(row?.raw) === 2 && Number(row?.letters) === 1 && Number(row?.aggregates) === 1;
      },
      { timeoutMs: 60_000 },
    );
    const args = [
      join(REPO_ROOT, 'dist/tools/cli/src/main.js'),
      'explain',
      'aggregate',
      id,
      'temperature',
      new Date(minute + 42_000).toISOString(), // any time in the minute
      '--database',
      database,
    ];
    const report = JSON.parse(
      (await exec(process.execPath, [...args, '--json'])).stdout,
    ) as AggregateExplanation;
    assert.equal(report.minute, new Date(minute).toISOString());
    assert.deepEqual(
      report.rows.map((r) => [r.messageId, r.late]),
      [
        [a.messageId, true], // stored ten minutes after its minute ended
        [b.messageId, true],
      ],
    );
    const values = report.rows.map((r) => r.value);
    assert.deepEqual(
      [report.recomputed?.samples, report.recomputed?.sum, report.recomputed?.min, report.recomputed?.max],
      [2, values[0] + values[1], Math.min(...values), Math.max(...values)],
    );
    assert.equal(report.stored?.samples, 2);
    assert.deepEqual(report.differences, [], 'the stored aggregate is what its raw rows give');
    assert.equal(report.deadLetters.length, 1);
    assert.match(report.deadLetters[0].code, /^DMP_ERR_CLEAN_/);
    assert.ok(report.deadLetters[0].payload.includes(refused.messageId), 'the refused message');

    const table = (await exec(process.execPath, args)).stdout;
    assert.match(table, /the stored aggregate is what its raw rows give/);
    assert.match(table, new RegExp(`${report.deadLetters[0].code} `));
  });

  it('evaluates only what storage keeps: a reading stamped a day ahead raises nothing, current data clears', async () => {
    const id = dev('future');
    await registerDevice(id, { siteId: 'plant-f' });
    const DAY = 86_400_000;
    const skipped = () =>
      readMetric(kernel!.baseUrl, 'dmp_kernel_rule_skipped_total', { reason: 'DMP_ERR_CLEAN_TS_FUTURE' });
    const skippedBefore = await skipped();

    // 46 °C stamped a day ahead: storage refuses it (DMP_ERR_CLEAN_TS_FUTURE), so the rules do not see it.
    const dayAhead = () => {
      const now = Date.now();
      return telemetry(id, { temp_f: 114.8 }, { ts: now + DAY, receivedAt: now });
    };
    await ingestAccepted([dayAhead()]);
    await waitFor('the kernel to skip it', async () => (await skipped()) === skippedBefore + 1);
    assert.deepEqual(await openAlarms(id), [], 'no alarm, not even pending');
    assert.deepEqual(await redis.hkeys(`${NAMESPACE}:state:${id}`), [], 'the device state did not take it');

    // A current hot reading raises the alarm (after its 2 s).
    await ingestAccepted([telemetry(id, { temp_f: 114.8 })]);
    const active = await waitFor('the alarm raised by current data', async () =>
      (await openAlarms(id)).find((a) => a.state === 'active'),
    );

    // Another reading a day ahead (refused, as before), one a minute ahead (within the 5 min storage
    // accepts), then a current cool one: it is what the device state holds now, so the alarm clears.
    const minuteAhead = Date.now() + 60_000;
    await ingestAccepted([dayAhead(), telemetry(id, { temp_f: 114.8 }, { ts: minuteAhead })]);
    await ingestAccepted([telemetry(id, { temp_f: 68 })]); // 20 °C
    await waitFor('the alarm cleared by current data', async () => (await openAlarms(id)).length === 0, {
      timeoutMs: 20_000, // well before the minute-ahead reading's time
    });
    assert.equal(await skipped(), skippedBefore + 2);

    const [cleared] = await waitFor('the cleared alarm in ClickHouse', async () => {
      const rows = await clickhouse
        .query<{ state: string; cleared_at_ms: string }>(
          `SELECT state, cleared_at_ms FROM alarms FINAL WHERE alarm_id = '${active.id}'`,
        )
        .catch(() => []);
      return rows[0]?.state === 'cleared' && rows;
    });
    assert.ok(Number(cleared.cleared_at_ms) < minuteAhead, 'dated by the current reading, not ahead');
    // Storage kept exactly what the rules saw: the two current readings and the minute-ahead one.
    const stored = await waitFor('the three stored readings', async () => {
      const rows = await clickhouse
        .query<{ metric_values: number[] }>(
          `SELECT metric_values FROM telemetry_raw FINAL WHERE device_id = '${id}' ORDER BY ts_ms`,
        )
        .catch(() => []);
      return rows.length >= 3 && rows;
    });
    assert.deepEqual(
      stored.map((row) => row.metric_values.map(Number)),
      [[46], [20], [46]],
      'by device time: the current 46 and 20 °C, then the minute-ahead 46 °C; nothing a day ahead',
    );
    const refused = await waitFor('the refused readings dead-lettered', async () => {
      const rows = await clickhouse
        .query<{ error_code: string }>(`SELECT error_code FROM dead_letters FINAL WHERE device_id = '${id}'`)
        .catch(() => []);
      return rows.length >= 2 && rows;
    });
    assert.deepEqual(
      refused.map((row) => row.error_code),
      ['DMP_ERR_CLEAN_TS_FUTURE', 'DMP_ERR_CLEAN_TS_FUTURE'],
    );
  });

  it('sends a linkage command to the device, on its command topic, in the message trace', async () => {
    const id = dev('door');
    await registerDevice(id, { tags: { zone: 'lobby' } });
    const traceId = randomBytes(16).toString('hex');
    await ingestAccepted([
      telemetry(
        id,
        { door_open: true },
        { kind: 'KIND_EVENT', traceparent: `00-${traceId}-${randomBytes(8).toString('hex')}-01` },
      ),
    ]);
    const on = await waitFor(
      'the "light on" command',
      () => commands.find((c) => c.topic === deviceCommandTopic(id)),
      {
        timeoutMs: 20_000,
      },
    );
    assert.equal(on.payload.ruleId, 'door-light');
    assert.equal(on.payload.name, 'light.set');
    assert.deepEqual(on.payload.params, { on: true, zone: 'lobby' });
    assert.match(String(on.payload.commandId), /^cmd-[0-9a-f]{20}$/);
    assert.equal(on.traceparent?.split('-')[1], traceId, 'the command continues the device message trace');

    await ingestAccepted([telemetry(id, { humidity: 40 })]); // says nothing about the door: nothing happens
    await ingestAccepted([telemetry(id, { door_open: false }, { kind: 'KIND_EVENT' })]);
    const off = await waitFor(
      'the "light off" command',
      () => commands.filter((c) => c.topic === deviceCommandTopic(id))[1],
      { timeoutMs: 20_000 },
    );
    assert.deepEqual(off.payload.params, { on: false });
    assert.equal(commands.filter((c) => c.topic === deviceCommandTopic(id)).length, 2);
    // Counted once the broker acknowledged it, which can come after the subscriber's copy.
    await waitFor(
      'both commands counted as sent',
      async () => (await readMetric(kernel!.baseUrl, 'dmp_kernel_commands_total', { result: 'ok' })) >= 2,
    );
  });

  it('delivers a webhook, retrying while the receiver fails', async () => {
    const id = dev('battery');
    await registerDevice(id, {});
    await ingestAccepted([telemetry(id, { batt_mv: 2800 })]);
    const delivered = await waitFor(
      'the webhook delivered after retries',
      () => hooks.find((h) => h.body.deviceId === id && h.status === 200),
      { timeoutMs: 30_000 },
    );
    const attempts = hooks.filter((h) => h.body.deliveryId === delivered.body.deliveryId);
    assert.deepEqual(
      attempts.map((h) => h.status),
      [503, 503, 200],
    );
    assert.equal(delivered.body.event, 'rule.raise');
    assert.equal(delivered.body.ruleId, 'battery-low');
    assert.deepEqual(delivered.body.params, { voltage: 2.8 });
    assert.equal(delivered.headers['x-dmp-delivery'], delivered.body.deliveryId);
    assert.equal(delivered.headers['x-team'], 'operations', 'the secret was substituted');
    await waitFor(
      'the webhook counted',
      async () => (await readMetric(kernel!.baseUrl, 'dmp_kernel_webhook_total', { result: 'ok' })) >= 1,
    );
  });

  it('hot-reloads the rule set under load: every message evaluated exactly once, none lost', async () => {
    // Many devices, few messages each: reloads meet messages of every device; and dmp-data (which stores
    // them too, one FIFO group per device) is not left with a long per-device backlog.
    const devices = Array.from({ length: 200 }, (_, i) => dev(`load-${i}`));
    const perDevice = 10;
    const reloadsBefore = await readMetric(kernel!.baseUrl, 'dmp_kernel_ruleset_reload_total', {
      result: 'ok',
    });
    const versions = new Set<string>();
    let loading = true;
    const variantB = {
      ...files,
      'extra.yaml':
        'rules:\n  - id: extra\n    when: msg.kind == "snapshot"\n    actions: [{ route: { topic: dmp_rules_test_route } }]\n    enabled: false\n',
    };
    // Reloads while messages flow: through the admin API (A ↔ B) and through the files (watcher).
    const reloader = (async () => {
      let flip = false;
      let reloads = 0;
      while (loading) {
        flip = !flip;
        if (reloads % 3 === 2) {
          // As editors and `git checkout` do: a new file renamed over the old one.
          await writeFile(
            join(rulesDir, '.routing.yaml.tmp'),
            `${files['routing.yaml']}# touched ${reloads}\n`,
          );
          await rename(join(rulesDir, '.routing.yaml.tmp'), join(rulesDir, 'routing.yaml'));
        } else {
          const response = await admin('PUT', '/rules', { files: flip ? variantB : files });
          assert.equal(response.status, 200);
          versions.add(((await response.json()) as { version: string }).version);
        }
        reloads += 1;
        await sleep(50);
      }
      return reloads;
    })();
    const messages = devices.flatMap((id) =>
      Array.from({ length: perDevice }, (_, i) => telemetry(id, { load_seq: i, temp_f: 70 })),
    );
    const ids = new Set(messages.map((m) => m.messageId));
    const arrived = () => new Set(routed.flatMap((view) => view.keys.filter((key) => ids.has(key)))).size;
    try {
      // Paced (≈ 2 s of traffic), so that reloads keep meeting messages in flight.
      for (let i = 0; i < messages.length; i += 100) {
        await ingestAccepted(messages.slice(i, i + 100));
        await sleep(100);
      }
      await waitFor(`${ids.size} routed messages`, () => arrived() === ids.size, {
        timeoutMs: 90_000,
        intervalMs: 500,
      }).catch(async (error: Error) => {
        const evaluated = await readMetric(kernel!.baseUrl, 'dmp_kernel_rule_evaluations_total', {
          rule: 'route-load',
          result: 'match',
        });
        const metrics = (await (await fetch(`${kernel!.baseUrl}/metrics`)).text())
          .split('\n')
          .filter((line) => /^dmp_(rocketmq|kernel_rule|kernel_ruleset)/.test(line))
          .join('\n');
        const missing = [...ids].filter((id) => !routed.some((view) => view.keys.includes(id)));
        throw new Error(
          `${error.message}: ${arrived()} arrived, ${evaluated} evaluated as match; missing e.g. ${missing.slice(0, 5).join(', ')}\n${metrics}`,
        );
      });
    } finally {
      loading = false;
    }
    const reloads = await reloader;
    await sleep(1_000); // anything routed twice would have arrived by now
    const mine = routed.filter((view) => view.keys.some((key) => ids.has(key)));
    const counts = new Map<string, number>();
    for (const view of mine) counts.set(view.keys[0], (counts.get(view.keys[0]) ?? 0) + 1);
    assert.equal(counts.size, ids.size, 'no message lost');
    assert.deepEqual(
      [...counts.values()].filter((n) => n !== 1),
      [],
      'no message evaluated twice',
    );
    // Each device's messages stay in order through the rules.
    for (const id of devices) {
      const order = mine.filter((v) => v.messageGroup === id).map((v) => v.keys[0]);
      assert.deepEqual(
        order,
        messages.filter((m) => m.deviceId === id).map((m) => m.messageId),
      );
    }
    const seen = new Set(mine.map((v) => v.properties.get('dmp_ruleset_version')));
    assert.ok(
      seen.size >= 2,
      `messages were evaluated by several rule set versions (${[...seen].join(', ')})`,
    );
    const reloadsAfter = await readMetric(kernel!.baseUrl, 'dmp_kernel_ruleset_reload_total', {
      result: 'ok',
    });
    // Some reloads bring back content that is already running (A after A): those are no swap.
    assert.ok(
      reloadsAfter - reloadsBefore >= 5,
      `${reloadsAfter - reloadsBefore} swaps for ${reloads} reloads`,
    );
    console.log(
      `hot reload: ${ids.size} messages, ${reloads} reloads, ${reloadsAfter - reloadsBefore} swaps, versions seen ${seen.size}`,
    );
  });

  it('refuses a broken rule file with its line and column, and keeps the running rule set', async () => {
    const before = (await (await admin('GET', '/rules')).json()) as { version: string };
    const broken = {
      ...files,
      'alarms.yaml': files['alarms.yaml'].replace(
        'state.latest.temperature > 30.0',
        'state.latest.temperature >> 30.0',
      ),
    };
    const response = await admin('PUT', '/rules', { files: broken });
    assert.equal(response.status, 422);
    const body = (await response.json()) as {
      errors: { file: string; line: number; column: number; message: string }[];
    };
    assert.deepEqual(body.errors, [
      { file: 'alarms.yaml', line: 4, column: 37, message: 'when: CEL: Unexpected token: GT' },
    ]);
    assert.equal(
      ((await (await admin('GET', '/rules')).json()) as { version: string }).version,
      before.version,
    );

    // The same through the files: the watcher refuses it, the running set stays; the CLI says where.
    const refusedBefore = await readMetric(kernel!.baseUrl, 'dmp_kernel_ruleset_reload_total', {
      result: 'refused',
      source: 'file',
    });
    await writeFile(join(rulesDir, 'alarms.yaml'), broken['alarms.yaml']);
    await waitFor(
      'the broken file refused',
      async () =>
        (await readMetric(kernel!.baseUrl, 'dmp_kernel_ruleset_reload_total', {
          result: 'refused',
          source: 'file',
        })) > refusedBefore,
    );
    assert.equal(
      ((await (await admin('GET', '/rules')).json()) as { version: string }).version,
      before.version,
    );
    const cli = await exec(process.execPath, [
      join(REPO_ROOT, 'dist/tools/cli/src/main.js'),
      'rules',
      'validate',
      rulesDir,
    ]).then(
      () => ({ code: 0, stderr: '' }),
      (error: { code: number; stderr: string }) => error,
    );
    assert.equal(cli.code, 1);
    assert.match(
      cli.stderr,
      new RegExp(
        `^${rulesDir.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}/alarms\\.yaml:4:37: when: CEL: Unexpected token: GT$`,
        'm',
      ),
    );
    await writeFile(join(rulesDir, 'alarms.yaml'), files['alarms.yaml']);
    // The still running rule set keeps working.
    const id = dev('after-refusal');
    await registerDevice(id, {});
    await ingestAccepted([telemetry(id, { door_open: true }, { kind: 'KIND_EVENT' })]);
    await waitFor('a command from the running rule set', () =>
      commands.find((c) => c.topic === deviceCommandTopic(id)),
    );
  });

  it('back-tests a rule against the history in ClickHouse: which alarms it would have raised', async () => {
    const id = dev('history');
    await registerDevice(id, {});
    const t0 = Date.now() - 3_600_000; // an hour ago
    const series: [number, number][] = [
      [0, 77], // 25 °C
      [5_000, 89.6], // 32 °C
      [10_000, 91.4], // 33 °C
      [20_000, 80.6], // 27 °C
      [30_000, 90.5], // 32.5 °C, then nothing more
    ];
    await ingestAccepted(series.map(([offset, f]) => telemetry(id, { temp_f: f }, { ts: t0 + offset })));
    await waitFor(
      'the history stored',
      async () => {
        const [row] = await clickhouse.query<{ n: string }>(
          `SELECT count() AS n FROM telemetry_raw FINAL WHERE device_id IN (${stringList([id])})`,
        );
        return Number(row?.n) === series.length;
      },
      { timeoutMs: 60_000 },
    );
    // A candidate rule: hotter than 31.5 °C for 3 s.
    const candidate = await mkdtemp(join(tmpdir(), 'dmp-rules-backtest-'));
    await writeFile(
      join(candidate, 'candidate.yaml'),
      'rules:\n  - id: hot-candidate\n    when: state.latest.temperature > 31.5\n    for: 3s\n    actions: [{ alarm: { severity: minor } }]\n',
    );
    const { stdout } = await exec(process.execPath, [
      join(REPO_ROOT, 'dist/tools/cli/src/main.js'),
      'rules',
      'backtest',
      '--rules',
      candidate,
      '--from',
      new Date(t0 - 60_000).toISOString(),
      '--to',
      String(t0 + 60_000),
      '--device',
      id,
      '--database',
      database,
      '--json',
    ]);
    await rm(candidate, { recursive: true, force: true });
    const report = JSON.parse(stdout) as BacktestReport;
    assert.equal(report.messages, series.length);
    assert.deepEqual(
      report.transitions.map((t) => [t.transition, Date.parse(t.ts) - t0, t.ruleId]),
      [
        ['raised', 8_000, 'hot-candidate'], // 32 °C from 5 s, held 3 s
        ['cleared', 20_000, 'hot-candidate'],
        ['raised', 33_000, 'hot-candidate'], // the last value held until the end of the range
      ],
    );
    assert.deepEqual(report.summary['hot-candidate'], { raised: 2, cleared: 1, openAtEnd: 1 });
  });
});
