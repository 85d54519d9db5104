/**
 * Observability against the real stack (issue #7): the three apps run on the ports the local
 * Prometheus scrapes (3001/3002/3003) under simulated device load, and
 *
 * 1. every PromQL expression DMP ships — Grafana panels and variables, alert rules (docker/tools/promql.mjs
 *    lists them) — runs without error and returns data, except the ones listed in EXPECTED_EMPTY with
 *    the reason (failure-only counters, EMQX / rocketmq-exporter series). An alert expression is empty
 *    while all is well, so its comparisons are made `bool`: then it returns data exactly when every
 *    series it compares exists.
 * 2. with ClickHouse slowed down — dmp-data reaches it through a relay that holds each answer back
 *    (no app code involved) — `dmp bottleneck` names the dmp-data hop, the overview's backlog panel of
 *    that hop rises, and DmpRocketMqBacklogGrowing fires in Prometheus.
 *
 * Isolation on the shared stack: its own ClickHouse database, RocketMQ topics (dmp_obs_test_*) and
 * consumer groups (*_obs_test), Redis database (the device registry and duplicate keys: another
 * dmp-mqtt on the stack must not accept this run's devices), MQTT share group and device-id prefix.
 * The kernel's rule evaluation is off (it would consume the topics with a shared group).
 */
import {
  chainTopicTypes,
  createRocketmqResources,
  dropDatabaseInBackground,
  freePort,
  REPO_ROOT,
  readMetric,
  stack,
  startApp,
  TEST_LOG_DIR,
  waitFor,
  type RunningApp,
} from '@dmp/testing';
import { Redis } from 'ioredis';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import { randomBytes } from 'node:crypto';
import { connect, createServer, type Server, type Socket } from 'node:net';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { pathToFileURL } from 'node:url';
import { promisify } from 'node:util';
import {
  analyze,
  collectEvidence,
  formatReport,
  JaegerClient,
  PrometheusClient,
  type BottleneckReport,
} from '../tools/cli/src/bottleneck';
import { DeviceFleet } from '../tools/simulator/src/device-fleet';

const run = randomBytes(3).toString('hex');
const database = `dmp_test_obs_${run}`;
const adminToken = randomBytes(24).toString('hex');
const topics = {
  event: 'dmp_obs_test_event',
  snapshot: 'dmp_obs_test_snapshot',
  deadLetter: 'dmp_obs_test_dead_letter',
  alarm: 'dmp_obs_test_alarm',
};
/** Prometheus scrapes exactly these (scripts/stack/prometheus.yml). */
const PORTS = { 'dmp-mqtt': 3001, 'dmp-kernel': 3002, 'dmp-data': 3003 } as const;
const DEVICES = 300;
/** Change events per second; snapshots add DEVICES / (300 s / TIME_COMPRESSION) per second. */
const RATE = 100;
const TIME_COMPRESSION = 30;
/** How long ClickHouse's answers are held back in step 2. */
const RESPONSE_DELAY_MS = 1_500;
const ALERT = 'DmpRocketMqBacklogGrowing';
/** dmp-mqtt's MQTT Receive Maximum, exported as dmp_mqtt_receive_maximum. */
const RECEIVE_MAXIMUM = 1_500;

/**
 * Expressions that legitimately return nothing on this stack under healthy load, keyed by
 * `where` (dashboard › panel (ref) or group › alert) — each with the reason.
 */
const EXTERNAL_EMQX =
  'EMQX metrics: the local stack runs Mosquitto, EMQX is scraped only in the compose deployment';
const EXTERNAL_ROCKETMQ = 'rocketmq-exporter metrics: only in the compose deployment';
const EXPECTED_EMPTY: Record<string, string> = {
  'DMP · dmp-data › Consumer errors and invisibility renewals (A)':
    'dmp_rocketmq_receive_errors_total is labelled: it exists only after a failed receive call',
  'DMP · dmp-data › Consumer errors and invisibility renewals (B)':
    'dmp_rocketmq_settle_errors_total: only after a failed ack / changeInvisibleDuration',
  'DMP · dmp-data › Consumer errors and invisibility renewals (C)':
    'dmp_rocketmq_invisible_renewals_total: only when a message is held longer than its invisibility (60 s)',
  'DMP · dmp-data › Insert errors (A)': 'dmp_clickhouse_insert_errors_total: only after a failed insert',
  'DMP · dmp-kernel › In flight and shed (B)':
    'dmp_kernel_shed_total: snapshots are shed only under pressure',
  'DMP · dmp-mqtt › Rejected and filtered by reason (A)':
    'dmp_mqtt_rejected_total: only after bad input (other tests on the broker may cause some)',
  'DMP · dmp-mqtt › Retries, abandoned messages, redelivery requests (B)':
    'dmp_mqtt_kernel_abandoned_total: only when dmp-kernel cannot take a message within the retry deadline',
  'DMP · Overview › Rejections and failures by reason (A)': 'dmp_mqtt_rejected_total: only after bad input',
  'DMP · Overview › Rejections and failures by reason (B)':
    'dmp_kernel_messages_total{outcome!="accepted"}: only after kernel failures',
  'DMP · Overview › Rejections and failures by reason (C)':
    'dmp_rocketmq_settled_total{outcome!="ack"}: only after retries / dead letters',
  'DMP · Overview › Rejections and failures by reason (D)':
    'dmp_data_messages_total{outcome!="stored"}: only after invalid or unstorable messages',
  'DMP · Overview › Hop 3 · dmp-kernel: in flight and shed (B)': 'dmp_kernel_shed_total: only under pressure',
  'DMP · Overview › Throughput per hop (A)': EXTERNAL_EMQX,
  'DMP · Overview › RocketMQ consumer lag (broker view) (A)': EXTERNAL_ROCKETMQ,
  'DMP · Overview › Dead letters: backlog age, in flight, new letters (A)':
    'dmp_rocketmq_delivery_delay_seconds of the dead-letter topic: only once dmp-data received a dead letter',
  'DMP · Overview › Dead letters: backlog age, in flight, new letters (C)':
    'dmp_rocketmq_sent_total{topic=~".*dead_letter.*"}: only after a message was dead-lettered',
  'DMP · Overview › Dead letters: backlog age, in flight, new letters (D)': EXTERNAL_ROCKETMQ,
  'DMP · Overview › EMQX connections (A)': EXTERNAL_EMQX,
  'DMP · Overview › EMQX connections (B)': EXTERNAL_EMQX,
  'DMP · Overview › EMQX connections (C)': EXTERNAL_EMQX,
  'DMP · Overview › EMQX messages and drops (A)': EXTERNAL_EMQX,
  'DMP · Overview › EMQX messages and drops (B)': EXTERNAL_EMQX,
  'DMP · Overview › EMQX messages and drops (C)': EXTERNAL_EMQX,
  'DMP · Overview › EMQX messages and drops (D)': EXTERNAL_EMQX,
  'DMP · Overview › EMQX authentication and authorization (A)': EXTERNAL_EMQX,
  'DMP · Overview › EMQX authentication and authorization (B)': EXTERNAL_EMQX,
  'DMP · Overview › EMQX authentication and authorization (C)': EXTERNAL_EMQX,
  'DMP · Overview › EMQX authentication and authorization (D)': EXTERNAL_EMQX,
  'dmp-backlog › DmpEmqxDroppingMessages': EXTERNAL_EMQX,
  'dmp-backlog › DmpRocketMqConsumerLag': EXTERNAL_ROCKETMQ,
  'dmp-backlog › DmpMqttMessagesAbandoned': 'dmp_mqtt_kernel_abandoned_total: only after abandoned messages',
  'dmp-backlog › DmpKernelShedding': 'dmp_kernel_shed_total: only under pressure',
  'dmp-backlog › DmpKernelLanesFull':
    'dmp_kernel_messages_total{outcome="full"}: only when a lane is full (RocketMQ behind)',
  'dmp-backlog › DmpRocketMqSendFailures': 'dmp_rocketmq_sent_total{result!="ok"}: only after failed sends',
  'dmp-backlog › DmpRocketMqDeadLetters':
    'dmp_rocketmq_settled_total{outcome="dead_letter"}: only after dead letters',
  'dmp-backlog › DmpRocketMqRedelivering':
    'dmp_rocketmq_settled_total{outcome="retry"}: only after a handler failed',
  'dmp-backlog › DmpDeadLettersUnstored':
    'dmp_rocketmq_settled_total{outcome="retry"} of the dead-letter topic: only after a dead letter could not be stored',
  'dmp-backlog › DmpRocketMqReceiveErrors': 'dmp_rocketmq_receive_errors_total: only after failed receives',
  'dmp-backlog › DmpClickHouseInsertErrors': 'dmp_clickhouse_insert_errors_total: only after failed inserts',
  'dmp-errors › DmpMqttRejectionRateHigh': 'dmp_mqtt_rejected_total: only after bad input',
  'dmp-errors › DmpKernelFailureRateHigh':
    'dmp_kernel_messages_total{outcome=~"failed|rejected"}: only after kernel failures',
  'dmp-errors › DmpDataMessagesFailing': 'dmp_data_messages_total{outcome!="stored"}: only after failures',
};

/** docker/tools/promql.mjs (ES module, JSDoc-typed). */
interface QueryEntry {
  kind: 'panel' | 'variable' | 'alert' | 'record';
  file: string;
  where: string;
  raw: string;
  query: string;
  metrics: string[];
  external: boolean;
  failureOnly: boolean;
}
interface PromqlModule {
  collectQueries(options?: { rateInterval?: string }): QueryEntry[];
  runQuery(
    url: string,
    query: string,
  ): Promise<{ status: 'success' | 'error'; error?: string; resultCount: number }>;
}

/**
 * An alert expression with every comparison made `bool`, so it returns a sample (0 or 1) for each
 * series it compares instead of only the ones over the threshold. Label matchers and strings are
 * left alone.
 */
function comparisonsAsBool(expr: string): string {
  let out = '';
  let braces = 0;
  let quote: string | undefined;
  for (let i = 0; i < expr.length; i++) {
    const c = expr[i];
    if (quote) {
      out += c;
      if (c === '\\') out += expr[++i] ?? '';
      else if (c === quote) quote = undefined;
      continue;
    }
    if (c === '"' || c === "'" || c === '`') quote = c;
    if (c === '{') braces++;
    if (c === '}') braces--;
    const op = braces === 0 ? /^(==|!=|>=|<=|>|<)/.exec(expr.slice(i))?.[1] : undefined;
    if (op) {
      out += op;
      i += op.length - 1;
      if (!/^\s*bool\b/.test(expr.slice(i + 1))) out += ' bool';
      continue;
    }
    out += c;
  }
  return out;
}

/**
 * A TCP relay in front of ClickHouse that can hold every answer back: requests pass at once,
 * responses (and the connection's end) are delivered `responseDelayMs` late, in order — a slow
 * ClickHouse as dmp-data sees it. (Delaying requests instead would race ClickHouse's keep-alive
 * timeout: it may close a connection while a request is still held in the relay.)
 */
class SlowResponseRelay {
  responseDelayMs = 0;
  private server?: Server;
  private readonly sockets = new Set<Socket>();
  port = 0;

  constructor(private readonly target: { host: string; port: number }) {}

  async listen(): Promise<void> {
    this.server = createServer((client) => {
      const upstream = connect(this.target.port, this.target.host);
      this.sockets.add(client).add(upstream);
      const close = () => {
        client.destroy();
        upstream.destroy();
        this.sockets.delete(client);
        this.sockets.delete(upstream);
      };
      for (const socket of [client, upstream]) socket.on('error', close).on('close', close);
      client.pipe(upstream);
      this.delayed(upstream, client);
    });
    await new Promise<void>((resolve) => this.server!.listen(0, '127.0.0.1', resolve));
    this.port = (this.server.address() as { port: number }).port;
  }

  private delayed(from: Socket, to: Socket): void {
    const queue: { due: number; chunk?: Buffer }[] = [];
    let timer: NodeJS.Timeout | undefined;
    const flush = () => {
      timer = undefined;
      while (queue.length > 0 && queue[0].due <= Date.now()) {
        const { chunk } = queue.shift()!;
        if (to.destroyed) return;
        if (chunk) to.write(chunk);
        else to.end();
      }
      if (queue.length > 0) timer = setTimeout(flush, queue[0].due - Date.now());
    };
    const push = (chunk?: Buffer) => {
      queue.push({ due: Date.now() + this.responseDelayMs, ...(chunk ? { chunk } : {}) });
      timer ??= setTimeout(flush, Math.max(0, queue[0].due - Date.now()));
    };
    from.on('data', (chunk: Buffer) => push(chunk));
    from.on('end', () => push());
  }

  async close(): Promise<void> {
    for (const socket of this.sockets) socket.destroy();
    await new Promise<void>((resolve) => (this.server ? this.server.close(() => resolve()) : resolve()));
  }
}

const prometheus = new PrometheusClient(stack.prometheusUrl);
const jaeger = new JaegerClient(stack.jaegerQueryUrl);

async function portInUse(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect(port, '127.0.0.1');
    socket.once('connect', () => (socket.destroy(), resolve(true)));
    socket.once('error', () => resolve(false));
  });
}

interface Alert {
  labels: Record<string, string>;
  state: 'pending' | 'firing' | 'inactive';
  activeAt?: string;
  value?: string;
}
async function alertsNamed(name: string): Promise<Alert[]> {
  const body = (await (await fetch(`${stack.prometheusUrl}/api/v1/alerts`)).json()) as {
    data: { alerts: Alert[] };
  };
  return body.data.alerts.filter((a) => a.labels.alertname === name);
}

/** A panel's values over time: its series summed (counts) or their maximum (quantiles per table, topic). */
async function rangeValues(
  expr: string,
  from: Date,
  to: Date,
  combine: 'sum' | 'max',
  keep: (labels: Record<string, string>) => boolean = () => true,
): Promise<{ t: number; v: number }[]> {
  const series = (await prometheus.queryRange(expr, from, to, 5)).filter((s) => keep(s.metric));
  const byTime = new Map<number, number>();
  for (const s of series)
    for (const [t, text] of s.values) {
      const v = Number(text);
      if (!Number.isFinite(v)) continue;
      const previous = byTime.get(t);
      byTime.set(t, previous === undefined ? v : combine === 'sum' ? previous + v : Math.max(previous, v));
    }
  return [...byTime.entries()].sort(([a], [b]) => a - b).map(([t, v]) => ({ t, v }));
}
const mean = (values: number[]) => values.reduce((s, v) => s + v, 0) / Math.max(1, values.length);

describe('alert expressions as data checks', () => {
  it('makes every comparison outside label matchers bool, once', () => {
    assert.equal(
      comparisonsAsBool('sum by (job) (x{result!="ok", a=~"b|c"}) > 0.9 and y == 0 or z <= bool 3'),
      'sum by (job) (x{result!="ok", a=~"b|c"}) > bool 0.9 and y == bool 0 or z <= bool 3',
    );
    assert.equal(comparisonsAsBool('a{l=">"} >= b offset 1m'), 'a{l=">"} >= bool b offset 1m');
    assert.equal(comparisonsAsBool('absent(up{job="x"})'), 'absent(up{job="x"})');
  });
});

describe('observability: dashboards, alert rules and `dmp bottleneck` against the real stack', () => {
  const apps: Partial<Record<keyof typeof PORTS, RunningApp>> = {};
  const clickhouseUrl = new URL(stack.clickhouse.url);
  const relay = new SlowResponseRelay({
    host: clickhouseUrl.hostname,
    port: Number(clickhouseUrl.port || 8123),
  });
  let redisDb = 0;
  let redisUrl = '';
  const fleet = new DeviceFleet({
    url: stack.mqtt.url,
    devices: DEVICES,
    rate: RATE,
    deviceIdPrefix: `obs-${run}`,
    timeCompression: TIME_COMPRESSION,
    traceRatio: 0.05,
    protobufRatio: 0.2,
    record: false,
  });
  const load = new AbortController();
  let running: Promise<unknown> | undefined;
  let loadStartedAt = new Date();
  let injectedAt: Date | undefined;
  /** Set when a backlog left by an earlier run was drained at start: rate windows must forget it. */
  let cleanFrom = 0;

  const admin = (method: string, path: string, body?: unknown) =>
    fetch(`${apps['dmp-mqtt']!.baseUrl}/admin/devices${path}`, {
      method,
      headers: { authorization: `Bearer ${adminToken}`, 'content-type': 'application/json' },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    });
  const forEachDevice = async (work: (deviceId: string) => Promise<void>) => {
    const ids = fleet.devices.map((d) => d.id);
    for (let i = 0; i < ids.length; i += 25) await Promise.all(ids.slice(i, i + 25).map(work));
  };

  before(async () => {
    await createRocketmqResources({
      topics: chainTopicTypes(topics),
      groups: {
        dmp_data_obs_test: 'orderly',
        dmp_data_alarm_obs_test: 'orderly',
        dmp_data_dead_letter_obs_test: 'concurrently',
      },
    });
    for (const [name, port] of Object.entries(PORTS))
      assert.equal(
        await portInUse(port),
        false,
        `port ${port} (Prometheus scrapes ${name} there) is taken: another run of the apps holds it`,
      );
    // An empty Redis database of its own (the registry and duplicate keys), see the header.
    const probe = new Redis(stack.redis.url, { lazyConnect: true });
    await probe.connect();
    const seed = Number.parseInt(run, 16);
    for (let k = 0; k < 15 && !redisDb; k++) {
      const db = 1 + ((seed + k) % 15);
      await probe.select(db);
      if ((await probe.dbsize()) === 0) redisDb = db;
    }
    probe.disconnect();
    assert.ok(redisDb, 'no empty Redis database for this run');
    redisUrl = `${stack.redis.url.replace(/\/\d*$/, '')}/${redisDb}`;

    await relay.listen();
    const common = {
      CLICKHOUSE_DATABASE: database,
      REDIS_URL: redisUrl,
      ROCKETMQ_TOPIC_EVENT: topics.event,
      ROCKETMQ_TOPIC_SNAPSHOT: topics.snapshot,
      ROCKETMQ_TOPIC_DEAD_LETTER: topics.deadLetter,
      ROCKETMQ_TOPIC_ALARM: topics.alarm,
      OTEL_TRACES_SAMPLE_RATIO: '0.05',
      LOG_LEVEL: 'warn',
    };
    const kernelGrpc = `127.0.0.1:${await freePort()}`;
    const started = await Promise.allSettled([
      startApp(
        'dmp-data',
        {
          ...common,
          HTTP_PORT: String(PORTS['dmp-data']),
          CLICKHOUSE_URL: `http://127.0.0.1:${relay.port}`,
          DATA_CONSUMER_GROUP: 'dmp_data_obs_test',
          DEAD_LETTER_CONSUMER_GROUP: 'dmp_data_dead_letter_obs_test',
          ALARM_CONSUMER_GROUP: 'dmp_data_alarm_obs_test',
        },
        { label: `obs-${run}-dmp-data` },
      ),
      startApp(
        'dmp-kernel',
        {
          ...common,
          HTTP_PORT: String(PORTS['dmp-kernel']),
          KERNEL_GRPC_URL: kernelGrpc,
          KERNEL_RULES_ENABLED: 'false',
        },
        { label: `obs-${run}-dmp-kernel` },
      ),
      startApp(
        'dmp-mqtt',
        {
          ...common,
          HTTP_PORT: String(PORTS['dmp-mqtt']),
          KERNEL_GRPC_URL: kernelGrpc,
          MQTT_SHARE_GROUP: `obs${run}`,
          MQTT_CLIENT_ID: `obs-${run}`,
          MQTT_RECEIVE_MAXIMUM: String(RECEIVE_MAXIMUM),
          ADMIN_TOKEN: adminToken,
          MQTT_AUTH_HTTP_SECRET: randomBytes(24).toString('hex'),
        },
        { label: `obs-${run}-dmp-mqtt` },
      ),
    ]);
    // Keep what started, so that after() stops it even when another app did not come up.
    for (const result of started) if (result.status === 'fulfilled') apps[result.value.name] = result.value;
    const failed = started.find((result) => result.status === 'rejected');
    if (failed) throw failed.reason;
    const data = apps['dmp-data']!;
    console.log(
      `observability e2e: run ${run}, database ${database}, Redis db ${redisDb}, logs .stack/logs/tests/obs-${run}-*.log`,
    );

    // Three waits that need nothing of one another, side by side.
    // Devices register through the admin API, as an operator (or `dmp devices register`) would.
    const register = forEachDevice(async (deviceId) => {
      const response = await admin('POST', '', { deviceId, tenantId: 't-obs' });
      assert.equal(response.status, 201, `register ${deviceId}: ${await response.text()}`);
    });

    // A backlog an interrupted earlier run left in the topics would distort the backlog ages: drain it.
    const telemetryReceived = async () =>
      (await readMetric(data.baseUrl, 'dmp_rocketmq_received_total', { topic: topics.event })) +
      (await readMetric(data.baseUrl, 'dmp_rocketmq_received_total', { topic: topics.snapshot }));
    let received = await telemetryReceived();
    let quietSince = Date.now();
    const drained = waitFor(
      'dmp-data to drain what earlier runs left in its topics',
      async () => {
        const now = await telemetryReceived();
        if (now !== received) [received, quietSince] = [now, Date.now()];
        return Date.now() - quietSince >= 6_000;
      },
      { timeoutMs: 120_000, intervalMs: 1_000 },
    ).then(() => {
      if (received > 0) {
        console.log(`drained ${received} message(s) left by earlier runs`);
        cleanFrom = quietSince + 65_000;
      }
    });
    const scraped = waitFor(
      'Prometheus to scrape the three apps',
      async () => {
        const up = await prometheus.query('up{job=~"dmp-mqtt|dmp-kernel|dmp-data"} == 1', new Date());
        return up.length === 3;
      },
      { timeoutMs: 30_000, intervalMs: 1_000 },
    );
    await Promise.all([register, drained, scraped]);

    await fleet.connect();
    loadStartedAt = new Date();
    running = fleet.run({ signal: load.signal, flushTimeoutMs: 10_000 });
  });

  after(async () => {
    relay.responseDelayMs = 0;
    load.abort();
    await running?.catch(() => undefined);
    await fleet.close().catch(() => undefined);
    // The devices' registrations go while dmp-data catches up (dmp-mqtt's, unrelated to it).
    const unregistered = apps['dmp-mqtt']
      ? forEachDevice(async (id) => void (await admin('DELETE', `/${id}`).catch(() => undefined)))
      : undefined;
    // Leave no backlog behind for the next run: let dmp-data catch up (bounded).
    const data = apps['dmp-data'];
    if (data) {
      let last = -1;
      await waitFor(
        'dmp-data to catch up',
        async () => {
          const inFlight = await readMetric(data.baseUrl, 'dmp_rocketmq_in_flight', {
            group: 'dmp_data_obs_test',
          });
          const received =
            (await readMetric(data.baseUrl, 'dmp_rocketmq_received_total', { topic: topics.event })) +
            (await readMetric(data.baseUrl, 'dmp_rocketmq_received_total', { topic: topics.snapshot }));
          const idle = inFlight === 0 && received === last;
          last = received;
          return idle;
        },
        { timeoutMs: 120_000, intervalMs: 3_000 },
      ).catch((error: unknown) => console.log(`warning: ${(error as Error).message}`));
    }
    await unregistered;
    // dmp-data has caught up: SIGKILL spares its drain (≈ 15 s: its four consumers wait out their long
    // polls in turn). The others stop gracefully (dmp-mqtt ends its MQTT session).
    await Promise.all(
      Object.values(apps).map((app) => app.stop(app.name === 'dmp-data' ? 'SIGKILL' : 'SIGTERM')),
    );
    await relay.close();
    dropDatabaseInBackground(database);
  });

  it(
    'runs every panel, variable and alert expression: each returns data but the listed exceptions',
    { timeout: 150_000 },
    async () => {
      const promql = (await import(
        pathToFileURL(join(REPO_ROOT, 'docker/tools/promql.mjs')).href
      )) as PromqlModule;
      const entries = promql.collectQueries({ rateInterval: '1m' });
      assert.ok(entries.length > 100, `expected the dashboards' and rules' queries, got ${entries.length}`);
      const wheres = new Set(entries.map((e) => e.where));
      assert.deepEqual(
        Object.keys(EXPECTED_EMPTY).filter((where) => !wheres.has(where)),
        [],
        'every exception names an existing panel or rule',
      );
      const queryOf = (e: QueryEntry) =>
        e.kind === 'alert' || e.kind === 'record' ? comparisonsAsBool(e.query) : e.query;

      let results: { entry: QueryEntry; query: string; status: string; error?: string; count: number }[] = [];
      const firstData = new Map<string, number>();
      const missing = () => results.filter((r) => r.count === 0 && !(r.entry.where in EXPECTED_EMPTY));
      await waitFor(
        'every expected query to return data',
        async () => {
          results = await Promise.all(
            entries.map(async (entry) => {
              const query = queryOf(entry);
              const r = await promql.runQuery(stack.prometheusUrl, query);
              return {
                entry,
                query,
                status: r.status,
                ...(r.error ? { error: r.error } : {}),
                count: r.resultCount,
              };
            }),
          );
          for (const r of results)
            if (r.count > 0 && !firstData.has(r.entry.where)) firstData.set(r.entry.where, Date.now());
          // At least 30 s of load: rates over [1m] and deriv() over [5m] need several scrapes.
          return Date.now() - loadStartedAt.getTime() >= 30_000 && missing().length === 0;
        },
        { timeoutMs: 120_000, intervalMs: 5_000 },
      ).catch(() => undefined); // the assertions below say what is missing

      const failed = results.filter((r) => r.status !== 'success');
      assert.deepEqual(
        failed.map((r) => `${r.entry.where}: ${r.error} — ${r.query}`),
        [],
        'every expression is valid PromQL for this Prometheus',
      );
      assert.deepEqual(
        missing().map((r) => `${r.entry.where}: ${r.query}`),
        [],
        'every expression not listed in EXPECTED_EMPTY returns data under load',
      );
      const empty = results.filter((r) => r.count === 0).map((r) => r.entry.where);
      console.log(
        `${results.length} expressions: ${results.length - empty.length} with data, ${empty.length} empty as expected` +
          (Object.keys(EXPECTED_EMPTY).length > empty.length
            ? ` (${Object.keys(EXPECTED_EMPTY).length - empty.length} listed ones had data too)`
            : ''),
      );
      const slowest = [...firstData.entries()]
        .sort(([, a], [, b]) => b - a)
        .slice(0, 3)
        .map(([where, at]) => `${where} after ${((at - loadStartedAt.getTime()) / 1000).toFixed(0)} s`);
      console.log(`last to show data: ${slowest.join('; ')}`);
      // The load is what the rest of the test builds on.
      const stats = fleet.stats();
      assert.ok(
        stats.acked > 1_000 && stats.failed === 0,
        `the broker took the load: ${JSON.stringify(stats)}`,
      );
      assert.ok(
        (await readMetric(apps['dmp-data']!.baseUrl, 'dmp_data_messages_total', { outcome: 'stored' })) > 500,
      );
      // The window the hop-1 panel and DmpMqttInFlightNearReceiveMaximum divide by, as Prometheus has it.
      const receiveMaximum = await prometheus.query(
        `dmp_mqtt_receive_maximum{instance="127.0.0.1:${PORTS['dmp-mqtt']}"}`,
        new Date(),
      );
      assert.deepEqual(
        receiveMaximum.map((s) => Number(s.value[1])),
        [RECEIVE_MAXIMUM],
      );
    },
  );

  it(
    `with ClickHouse slowed down, \`dmp bottleneck\` names the dmp-data hop, its backlog panel rises and ${ALERT} fires`,
    { timeout: 300_000 },
    async () => {
      // The healthy baseline: 30 s of steady load (past the start-up surge, and past the 1-minute rate
      // windows that still see a backlog drained at start), then the slowdown.
      const healthyFrom = new Date(Math.max(loadStartedAt.getTime() + 30_000, cleanFrom));
      const injectFrom = healthyFrom.getTime() + 30_000;
      if (Date.now() < injectFrom) await sleep(injectFrom - Date.now());
      // What `dmp bottleneck` reads for the healthy run, kept with the logs (the unit specs' fixtures
      // are recorded this way).
      const healthy = await collectEvidence({
        prometheus,
        jaeger,
        from: healthyFrom,
        to: new Date(),
        tracesPerOperation: 30,
      });
      await writeFile(join(TEST_LOG_DIR, `obs-${run}-evidence-healthy.json`), JSON.stringify(healthy));
      console.log(`before the slowdown: ${analyze(healthy).verdict.summary}`);
      injectedAt = new Date();
      relay.responseDelayMs = RESPONSE_DELAY_MS;
      console.log(
        `slowdown: ClickHouse answers held back ${RESPONSE_DELAY_MS} ms from ${injectedAt.toISOString()}`,
      );

      // The alert: pending once the backlog age p99 is over 10 s and rising, firing a minute later.
      const ours = (a: Alert) => a.labels.topic === topics.event || a.labels.topic === topics.snapshot;
      let pendingAt: number | undefined;
      const firing = await waitFor(
        `${ALERT} to fire`,
        async () => {
          const alerts = (await alertsNamed(ALERT)).filter(ours);
          if (!pendingAt && alerts.some((a) => a.state === 'pending')) pendingAt = Date.now();
          return alerts.find((a) => a.state === 'firing');
        },
        { timeoutMs: 180_000, intervalMs: 2_500 },
      );
      const to = new Date();
      console.log(
        `${ALERT} firing for ${firing.labels.topic} (p99 ${Number(firing.value).toFixed(1)} s) ${((to.getTime() - injectedAt.getTime()) / 1000).toFixed(0)} s after the slowdown` +
          (pendingAt ? `, pending after ${((pendingAt - injectedAt.getTime()) / 1000).toFixed(0)} s` : ''),
      );
      const rules = (await (await fetch(`${stack.prometheusUrl}/api/v1/rules?type=alert`)).json()) as {
        data: { groups: { rules: { name: string; health: string; lastError?: string }[] }[] };
      };
      const rule = rules.data.groups.flatMap((g) => g.rules).find((r) => r.name === ALERT);
      assert.equal(rule?.health, 'ok', `the rule evaluates cleanly: ${rule?.lastError ?? ''}`);

      // The analysis, as a function over what the APIs answer for the slowdown's range…
      const evidence = await collectEvidence({
        prometheus,
        jaeger,
        from: injectedAt,
        to,
        tracesPerOperation: 30,
      });
      await writeFile(
        join(TEST_LOG_DIR, `obs-${run}-evidence-slow-clickhouse.json`),
        JSON.stringify(evidence),
      );
      const report: BottleneckReport = analyze(evidence);
      console.log(formatReport(report, { prometheus: stack.prometheusUrl, jaeger: stack.jaegerQueryUrl }));
      assert.equal(report.verdict.hop, 'data', `the verdict: ${JSON.stringify(report.verdict, null, 2)}`);
      assert.equal(report.verdict.basis, 'backlog');
      const dataHop = report.hops.find((h) => h.id === 'data')!;
      assert.ok(
        dataHop.backlog.some((b) => b.high || b.growing),
        'the evidence shows the hop-5 backlog',
      );
      assert.ok((dataHop.latency?.p99 ?? 0) >= RESPONSE_DELAY_MS / 1000, 'and its handling time');
      assert.ok(report.traceCount > 0, 'Jaeger traces of the range were read');

      // …and as the operator runs it.
      const cli = await promisify(execFile)(
        process.execPath,
        [
          join(REPO_ROOT, 'dist/tools/cli/src/main.js'),
          'bottleneck',
          '--from',
          injectedAt.toISOString(),
          '--to',
          to.toISOString(),
          '--json',
        ],
        {
          cwd: REPO_ROOT,
          env: {
            ...process.env,
            PROMETHEUS_URL: stack.prometheusUrl,
            JAEGER_QUERY_URL: stack.jaegerQueryUrl,
          },
        },
      );
      const cliReport = JSON.parse(cli.stdout) as BottleneckReport;
      assert.equal(cliReport.verdict.hop, 'data', cli.stdout);

      // The overview's backlog panel of that hop rises over the run (and hop 4's backlog age behind it).
      const promql = (await import(
        pathToFileURL(join(REPO_ROOT, 'docker/tools/promql.mjs')).href
      )) as PromqlModule;
      const panel = (where: string) => {
        const entry = promql.collectQueries({ rateInterval: '1m' }).find((e) => e.where === where);
        assert.ok(entry, `panel ${where}`);
        return entry.query;
      };
      const before = (points: { t: number; v: number }[]) =>
        points
          .filter((p) => p.t * 1000 >= healthyFrom.getTime() && p.t * 1000 < injectedAt!.getTime())
          .map((p) => p.v);
      // Once the slowdown has taken hold (the 1-minute windows of the quantiles need a little longer).
      const during = (points: { t: number; v: number }[]) =>
        points.filter((p) => p.t * 1000 >= injectedAt!.getTime() + 20_000).map((p) => p.v);
      const lastSeconds = (points: { t: number; v: number }[], seconds: number) =>
        points.filter((p) => p.t * 1000 >= to.getTime() - seconds * 1000).map((p) => p.v);
      const queued = await rangeValues(
        panel('DMP · Overview › Hop 5 · dmp-data → ClickHouse: queued rows and insert latency (A)'),
        healthyFrom,
        to,
        'sum',
      );
      const insertP99 = await rangeValues(
        panel('DMP · Overview › Hop 5 · dmp-data → ClickHouse: queued rows and insert latency (B)'),
        healthyFrom,
        to,
        'max',
      );
      const waited = await rangeValues(
        panel('DMP · Overview › Hop 5 · dmp-data → ClickHouse: queued rows and insert latency (C)'),
        healthyFrom,
        to,
        'max',
      );
      const age = await rangeValues(
        panel('DMP · Overview › Hop 4 · RocketMQ → dmp-data: backlog age and in flight (A)'),
        healthyFrom,
        to,
        'max',
        // This run's telemetry topics (the panel leaves dead letters out; the alarm topic is not loaded).
        (labels) => labels.topic === topics.event || labels.topic === topics.snapshot,
      );
      const rise = {
        queuedRows: { before: mean(before(queued)), after: mean(during(queued)) },
        insertP99: { before: mean(before(insertP99)), after: mean(lastSeconds(insertP99, 30)) },
        oldestWaiting: { before: mean(before(waited)), after: mean(during(waited)) },
        backlogAgeP99: { before: mean(before(age)), after: mean(lastSeconds(age, 30)) },
      };
      console.log(`overview panels, before → after the slowdown: ${JSON.stringify(rise)}`);
      assert.ok(
        rise.queuedRows.after >= 1.5 * rise.queuedRows.before &&
          rise.queuedRows.after - rise.queuedRows.before >= 50,
        `hop 5 queued rows rise: ${JSON.stringify(rise.queuedRows)}`,
      );
      assert.ok(
        rise.insertP99.after >= RESPONSE_DELAY_MS / 1000 && rise.insertP99.after > rise.insertP99.before,
        `hop 5 insert p99 rises: ${JSON.stringify(rise.insertP99)}`,
      );
      // What DmpDataQueueGrowing watches: each batch now takes at least two held-back answers.
      assert.ok(
        rise.oldestWaiting.after >= RESPONSE_DELAY_MS / 1000 / 2 &&
          rise.oldestWaiting.after > 2 * rise.oldestWaiting.before,
        `hop 5 messages wait longer to be stored: ${JSON.stringify(rise.oldestWaiting)}`,
      );
      assert.ok(
        rise.backlogAgeP99.after > 10 && rise.backlogAgeP99.after > 2 * rise.backlogAgeP99.before,
        `hop 4 backlog age rises: ${JSON.stringify(rise.backlogAgeP99)}`,
      );
    },
  );
});
