import { freePort, stack, startApp, type RunningApp } from '@dmp/testing';
import { randomBytes } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { DeviceFleet } from '../../../../simulator/src/device-fleet';
import {
  formatNumber,
  type BenchOptions,
  type BenchSuite,
  type Measurement,
  type SuiteResult,
} from '../../suite';
import {
  benchRedisUrl,
  cleanRedis,
  commonAppEnv,
  createBenchResources,
  type BenchGroups,
  type BenchTopics,
  kernelAppEnv,
  mqttAppEnv,
  poll,
  runRedisPatterns,
} from '../bench-apps';
import { fleetMix } from '../chain/analysis';
import { BenchStore } from '../chain/bench-store';
import { DEVICES } from '../chain';
import { findProcess, ProcessMonitor, STACK_SERVERS } from '../chain/process-monitor';
import {
  HOPS,
  hopFigures,
  hopsPlan,
  hopsSummary,
  type HopFigures,
  type HopName,
  type HopsPlan,
} from './analysis';
import { IngestDriver } from './ingest-driver';
import { InstantKernel } from './instant-kernel';

/**
 * Each app of the chain alone, at its maximum rate, so that a regression in one hop shows even when
 * another limits the chain:
 *
 * - **mqtt**: the simulator's publisher → Mosquitto → dmp-mqtt → an Ingest server in the bench process
 *   that accepts at once ({@link InstantKernel});
 * - **kernel**: Ingest calls as dmp-mqtt makes them ({@link IngestDriver}) → dmp-kernel → RocketMQ;
 * - **data**: its topics filled through dmp-kernel while dmp-data is stopped, then dmp-data started and
 *   timed until the messages are rows in ClickHouse.
 *
 * Each reports messages a second, µs of CPU per message of its app and of the processes it involves,
 * and the rate one core of the app carries. Isolation as in the chain suite: own topics (`dmp_bench_hop_*`,
 * created here) and groups, ClickHouse database (`dmp_bench_hop_{run}`), share group, Redis namespace, ports.
 */
const KERNEL_TOPICS: BenchTopics = {
  ROCKETMQ_TOPIC_EVENT: 'dmp_bench_hop_kernel_event',
  ROCKETMQ_TOPIC_SNAPSHOT: 'dmp_bench_hop_kernel_snapshot',
  ROCKETMQ_TOPIC_ALARM: 'dmp_bench_hop_alarm',
  ROCKETMQ_TOPIC_DEAD_LETTER: 'dmp_bench_hop_dead_letter',
};
/** dmp-data's hop reads topics of its own: nothing else (the kernel hop's messages) waits in them. */
const DATA_TOPICS: BenchTopics = {
  ...KERNEL_TOPICS,
  ROCKETMQ_TOPIC_EVENT: 'dmp_bench_hop_data_event',
  ROCKETMQ_TOPIC_SNAPSHOT: 'dmp_bench_hop_data_snapshot',
};
const DATA_GROUPS: BenchGroups = {
  DATA_CONSUMER_GROUP: 'dmp_bench_hop_data',
  ALARM_CONSUMER_GROUP: 'dmp_bench_hop_alarm',
  DEAD_LETTER_CONSUMER_GROUP: 'dmp_bench_hop_dead_letter',
};

/** The processes each hop tracks besides its app and the bench process. */
const SERVERS: Record<HopName, string[]> = {
  mqtt: ['mosquitto', 'redis'],
  kernel: ['rocketmq', 'redis'],
  data: ['rocketmq', 'clickhouse'],
};

interface HopContext {
  run: string;
  database: string;
  plan: HopsPlan;
  log: (line: string) => void;
}

interface HopRun {
  figures: HopFigures;
  details: Record<string, unknown>;
}

export const hopsSuite: BenchSuite = {
  name: 'hops',
  description: `each app alone at its maximum rate (${HOPS.join(', ')}; --hops to choose): msg/s and µs of CPU per message`,
  run: runHops,
};

async function runHops(options: BenchOptions): Promise<SuiteResult> {
  const plan = hopsPlan(options.quick, { messages: options.messages });
  const hops = options.hops ?? [...HOPS];
  const run = randomBytes(3).toString('hex');
  const database = `dmp_bench_hop_${run}`;
  const log = (line: string) => console.log(`  [hops] ${line}`);
  const store = new BenchStore(database);
  const context: HopContext = { run, database, plan, log };
  const results: HopRun[] = [];
  try {
    await createBenchResources([KERNEL_TOPICS, DATA_TOPICS], [DATA_GROUPS]);
    log(
      `run ${run}: ${hops.join(', ')}; ${formatNumber(plan.messages)} messages each after ${formatNumber(plan.warmupMessages)} unmeasured`,
    );
    for (const hop of hops) {
      const result = await { mqtt: mqttHop, kernel: kernelHop, data: (c: HopContext) => dataHop(c, store) }[
        hop
      ](context);
      const f = result.figures;
      log(
        `  ${f.app}: ${formatNumber(Math.round(f.msgPerSec))} msg/s, ${f.appCpuMicrosPerMessage.toFixed(1)} µs of CPU per message ` +
          `(${formatNumber(Math.round(f.appMsgPerSecPerCore))} msg/s per core)`,
      );
      results.push(result);
    }
    return report(run, database, plan, results);
  } finally {
    if (!options.keep)
      await store.drop().catch((error: unknown) => log(`drop ${database}: ${String(error)}`));
    else log(`kept ClickHouse database ${database}`);
    await store.close();
    await cleanRedis(benchRedisUrl(), runRedisPatterns(run)).catch((error: unknown) =>
      log(`Redis clean-up: ${String(error)}`),
    );
  }
}

/** A monitor of the hop's app, the servers it involves and the bench process. */
function monitorOf(hop: HopName, app: RunningApp): ProcessMonitor {
  const monitor = new ProcessMonitor();
  monitor.track(app.name, app.process.pid);
  for (const name of SERVERS[hop])
    monitor.track(name, findProcess(STACK_SERVERS.find((s) => s.name === name)!.pattern));
  monitor.track('bench', process.pid);
  return monitor;
}

/**
 * Polls `read` until it reaches `target`, or has not moved for `stallMs`; keeps the monitor's peak RSS.
 * Resolves with the last value and when it was reached (performance.now()).
 */
async function progress(
  read: () => number | Promise<number>,
  target: () => number | undefined,
  { stallMs, monitor, intervalMs = 100 }: { stallMs: number; monitor?: ProcessMonitor; intervalMs?: number },
): Promise<{ value: number; at: number }> {
  let last = -1;
  let movedAt = performance.now();
  let sampledAt = 0;
  for (;;) {
    const value = await read();
    const goal = target();
    if (goal !== undefined && value >= goal) return { value, at: performance.now() };
    if (value !== last) [last, movedAt] = [value, performance.now()];
    else if (performance.now() - movedAt > stallMs) return { value, at: movedAt };
    if (monitor && performance.now() - sampledAt > 1_000) {
      monitor.sample();
      sampledAt = performance.now();
    }
    await sleep(intervalMs);
  }
}

/** The hop's figures: `messages` between `started` and `ended`, the CPU from the monitor's mark (at `started`) until now. */
function figuresOf(hop: HopName, messages: number, started: number, ended: number, monitor: ProcessMonitor) {
  const usage = monitor.window();
  const cpuWindowSeconds = (performance.now() - started) / 1000;
  return {
    figures: hopFigures({
      hop,
      messages,
      seconds: (ended - started) / 1000,
      cpuSeconds: Object.fromEntries(
        usage.processes.map((p) => [p.name, (p.cpuPercent / 100) * cpuWindowSeconds]),
      ),
    }),
    usage,
  };
}

async function mqttHop({ run, database, plan, log }: HopContext): Promise<HopRun> {
  const kernel = await InstantKernel.start();
  let app: RunningApp | undefined;
  let fleet: DeviceFleet | undefined;
  try {
    app = await startApp(
      'dmp-mqtt',
      { ...commonAppEnv(KERNEL_TOPICS, database), ...mqttAppEnv(run, kernel.url) },
      { label: `bench-${run}-hop-dmp-mqtt` },
    );
    const monitor = monitorOf('mqtt', app);
    const mix = fleetMix(plan.mqttOfferedPerSecond, DEVICES);
    fleet = new DeviceFleet({
      url: stack.mqtt.url,
      devices: DEVICES,
      rate: mix.changesPerSecond,
      timeCompression: mix.timeCompression,
      heartbeatIntervalMs: 0,
      deviceIdPrefix: `h${run}m`,
      clientIdPrefix: `bench-${run}-hop`,
      record: false,
    });
    await fleet.connect();
    log(
      `mqtt: publisher offers ${formatNumber(plan.mqttOfferedPerSecond)} msg/s (Mosquitto queues what dmp-mqtt does not take yet), ` +
        `dmp-mqtt hands off to an Ingest server that accepts at once`,
    );
    const total = plan.warmupMessages + plan.messages;
    const publishing = fleet.run({ count: total, flushTimeoutMs: 60_000 });
    await progress(
      () => kernel.accepted,
      () => plan.warmupMessages,
      { stallMs: plan.stallMs },
    );
    monitor.mark();
    const [from, started] = [kernel.accepted, performance.now()];
    let brokerTook: number | undefined;
    // (A failed run shows where it is awaited below.)
    publishing.then((stats) => (brokerTook = stats.acked)).catch(() => undefined);
    const { value: reached, at } = await progress(
      () => kernel.accepted,
      () => brokerTook,
      { stallMs: plan.stallMs, monitor },
    );
    const { figures, usage } = figuresOf('mqtt', reached - from, started, at, monitor);
    const stats = await publishing;
    if (reached < stats.acked)
      log(`  dmp-mqtt handed off ${reached} of the ${stats.acked} messages the broker took`);
    return {
      figures,
      details: {
        offeredPerSecond: plan.mqttOfferedPerSecond,
        publisher: { sent: stats.sent, acked: stats.acked, failed: stats.failed, skipped: stats.skipped },
        handedOff: reached,
        // Below 0 when dmp-mqtt handed messages off twice (an Ingest call past its deadline is retried).
        missing: stats.acked - reached,
        ingestCalls: kernel.calls,
        resources: usage,
      },
    };
  } finally {
    await fleet?.close();
    await app?.stop();
    kernel.stop();
  }
}

async function kernelHop({ run, database, plan, log }: HopContext): Promise<HopRun> {
  const grpcUrl = `127.0.0.1:${await freePort()}`;
  let app: RunningApp | undefined;
  const driver = new IngestDriver(grpcUrl, { devices: DEVICES, deviceIdPrefix: `h${run}k` });
  try {
    app = await startApp(
      'dmp-kernel',
      { ...commonAppEnv(KERNEL_TOPICS, database), ...kernelAppEnv(run, grpcUrl) },
      { label: `bench-${run}-hop-dmp-kernel` },
    );
    const monitor = monitorOf('kernel', app);
    log('kernel: Ingest calls as dmp-mqtt makes them (500 messages, 8 in flight), RocketMQ real, rules off');
    await driver.run(plan.warmupMessages);
    monitor.mark();
    const started = performance.now();
    const sampler = poll(1_000, () => Promise.resolve(monitor.sample()));
    const stats = await driver.run(plan.messages);
    const ended = performance.now();
    await sampler.stop();
    const { figures, usage } = figuresOf('kernel', stats.accepted, started, ended, monitor);
    return { figures, details: { ingest: stats, resources: usage } };
  } finally {
    driver.close();
    await app?.stop();
  }
}

async function dataHop({ run, database, plan, log }: HopContext, store: BenchStore): Promise<HopRun> {
  const grpcUrl = `127.0.0.1:${await freePort()}`;
  const dataEnv = { ...commonAppEnv(DATA_TOPICS, database), ...DATA_GROUPS };
  const driver = new IngestDriver(grpcUrl, { devices: DEVICES, deviceIdPrefix: `h${run}d` });
  let data: RunningApp | undefined;
  let kernel: RunningApp | undefined;
  try {
    data = await startApp('dmp-data', dataEnv, { label: `bench-${run}-hop-dmp-data` });
    kernel = await startApp(
      'dmp-kernel',
      { ...commonAppEnv(DATA_TOPICS, database), ...kernelAppEnv(run, grpcUrl) },
      { label: `bench-${run}-hop-dmp-kernel-fill` },
    );
    // Through the whole way once: the group has its offsets, leftovers of an interrupted run are read.
    log(`data: warm-up, ${formatNumber(plan.warmupMessages)} messages through dmp-kernel and dmp-data`);
    const rowsBefore = await store.rows();
    await driver.run(plan.warmupMessages);
    await progress(
      () => store.rows(),
      () => rowsBefore + plan.warmupMessages,
      { stallMs: plan.stallMs, intervalMs: 250 },
    );
    await data.stop();
    data = undefined;
    const rowsStopped = await store.rows();
    log(
      `data: dmp-data stopped; filling its topics with ${formatNumber(plan.messages)} messages through dmp-kernel`,
    );
    const fill = await driver.run(plan.messages);
    await kernel.stop();
    kernel = undefined;
    log(`  filled at ${formatNumber(Math.round(fill.accepted / fill.seconds))} msg/s; starting dmp-data`);

    data = await startApp('dmp-data', dataEnv, { label: `bench-${run}-hop-dmp-data` });
    const monitor = monitorOf('data', data);
    monitor.mark();
    const started = performance.now();
    const [rowsFrom, since] = await Promise.all([store.rows(), store.serverSeconds()]);
    const { value: reached, at } = await progress(
      () => store.rows(),
      () => rowsStopped + fill.accepted,
      { stallMs: plan.stallMs, monitor, intervalMs: 250 },
    );
    const { figures, usage } = figuresOf('data', reached - rowsFrom, started, at, monitor);
    const written = await store.rowsWrittenSince(since);
    const all = Object.values(written).reduce((a, b) => a + b, 0);
    // Below 0 when messages were stored twice (at least once: a stopped consumer's last batch may come again).
    const missing = rowsStopped + fill.accepted - reached;
    if (missing > 0) log(`  ${missing} of the ${fill.accepted} messages did not arrive`);
    return {
      figures,
      details: {
        fill,
        storedBeforeStart: rowsFrom - rowsStopped,
        missing,
        clickhouseRowsWrittenPerMessage: {
          ...Object.fromEntries(
            Object.entries(written).map(([t, n]) => [t, n / Math.max(1, figures.messages)]),
          ),
          all: all / Math.max(1, figures.messages),
        },
        resources: usage,
      },
    };
  } finally {
    driver.close();
    await kernel?.stop();
    await data?.stop();
  }
}

function report(run: string, database: string, plan: HopsPlan, results: HopRun[]): SuiteResult {
  const round = (v: number) => (Number.isFinite(v) ? Math.round(v) : Number.NaN);
  const measurements: Measurement[] = results.flatMap(({ figures: f }) => [
    { name: `${f.hop}: ${f.app} at its maximum`, value: round(f.msgPerSec), unit: 'msg/s' },
    { name: `  … ${f.app} CPU per message`, value: Number(f.appCpuMicrosPerMessage.toFixed(1)), unit: 'µs' },
    { name: `  … msg/s one core of ${f.app} carries`, value: round(f.appMsgPerSecPerCore), unit: 'msg/s' },
  ]);
  const others = ['mosquitto', 'rocketmq', 'clickhouse', 'redis', 'bench'];
  return {
    summary: hopsSummary(results.map((r) => r.figures)),
    measurements,
    tables: [
      {
        title:
          'each hop alone (missing: sent − handled, when the hop stalled; below 0 when some were handled twice; app: µs of one core per message; others: µs per message of the servers it involves and the bench process, which publishes or calls)',
        columns: [
          'hop',
          'app',
          'messages',
          'missing',
          'seconds',
          'msg/s',
          'app µs/msg',
          'msg/s per core',
          ...others,
        ],
        rows: results.map(({ figures: f, details }) => [
          f.hop,
          f.app,
          f.messages,
          typeof details.missing === 'number' ? details.missing : 0,
          Number(f.seconds.toFixed(1)),
          round(f.msgPerSec),
          Number(f.appCpuMicrosPerMessage.toFixed(1)),
          round(f.appMsgPerSecPerCore),
          ...others.map((o) => (o in f.cpuMicrosPerMessage ? round(f.cpuMicrosPerMessage[o]) : '-')),
        ]),
      },
    ],
    details: {
      run,
      database,
      devices: DEVICES,
      plan,
      hops: Object.fromEntries(results.map((r) => [r.figures.hop, { ...r.figures, ...r.details }])),
    },
  };
}
