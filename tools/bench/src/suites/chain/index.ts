import { freePort, metricSum, stack, startApp, type RunningApp } from '@dmp/testing';
import { randomBytes } from 'node:crypto';
import { availableParallelism } from 'node:os';
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
  REDIS_DB,
  runRedisPatterns,
  scrape,
  TRACE_SAMPLE_RATIO,
} from '../bench-apps';
import {
  chainSummary,
  cpuBudget,
  fleetMix,
  headline,
  hopRates,
  judgeStep,
  microsPerMessage,
  stepPlan,
  summarizeLatencies,
  TARGET_RATE,
  type LatencySummary,
  type StepPlan,
  type StepSample,
  type StepVerdict,
} from './analysis';
import { BenchStore } from './bench-store';
import { LatencyProbe } from './latency-probe';
import { findProcess, ProcessMonitor, STACK_SERVERS, type ProcessUsage } from './process-monitor';
import { rawMqttPassThrough, type RawMqttResult } from './raw-mqtt';

/**
 * The whole chain on the local stack — simulator → Mosquitto → dmp-mqtt → dmp-kernel → RocketMQ →
 * dmp-data → ClickHouse — at stepped offered rates until it saturates, next to the raw limits of the
 * broker (publisher → subscriber) and of ClickHouse (bulk inserts) measured in the same run.
 *
 * Isolation: the apps run with their own RocketMQ topics and groups (`dmp_bench_*`, created here),
 * ClickHouse database (`dmp_bench_{run}`, dropped afterwards unless
 * --keep), MQTT share group and client id (no session kept), Redis database and key namespace, and ports.
 */
export const DEVICES = 100_000;
/** Messages per step whose latency is measured… */
const LATENCY_SAMPLES = 2_000;
/**
 * …all from the first devices of the fleet: their ids sort together, so the probe's polls read one
 * narrow range of telemetry_raw's primary key instead of a granule per sampled device all over it
 * (which made the benchmark's polling a good part of ClickHouse's load). Shards hash device ids, so
 * these devices spread over every shard like the others.
 */
const PROBE_DEVICES = 5_000;
/** The index of the pipeline's warm-up step (device prefix `b{run}s-1`). */
const WARM_UP = -1;
/** The processes of the pipeline itself; the rest (publisher, servers) is what the machine leaves them. */
export const APPS: readonly RunningApp['name'][] = ['dmp-mqtt', 'dmp-kernel', 'dmp-data'];

export const BENCH_TOPICS: BenchTopics = {
  ROCKETMQ_TOPIC_EVENT: 'dmp_bench_event',
  ROCKETMQ_TOPIC_SNAPSHOT: 'dmp_bench_snapshot',
  ROCKETMQ_TOPIC_ALARM: 'dmp_bench_alarm',
  ROCKETMQ_TOPIC_DEAD_LETTER: 'dmp_bench_dead_letter',
};
export const BENCH_GROUPS: BenchGroups = {
  DATA_CONSUMER_GROUP: 'dmp_bench_data',
  ALARM_CONSUMER_GROUP: 'dmp_bench_alarm',
  DEAD_LETTER_CONSUMER_GROUP: 'dmp_bench_dead_letter',
};

interface StepResult {
  target: number;
  mix: ReturnType<typeof fleetMix>;
  verdict: StepVerdict;
  sent: number;
  acked: number;
  failed: number;
  skipped: number;
  storedMessages: number;
  storedRows: number;
  /**
   * Rows ClickHouse wrote per stored message during the step, by table (views and the aggregator's
   * telemetry_1m included), from the parts the inserts made.
   */
  rowsWrittenPerMessage: Record<string, number>;
  lost: number;
  duplicates: number;
  /** From the end of publishing until the last row arrived (or the drain gave up). */
  drainMs: number;
  drained: boolean;
  latencyMs: LatencySummary & { resolutionMs: number; notFound: number };
  publishAckMs: { p50: number; p99: number; max: number };
  resources: { processes: ProcessUsage[]; machineBusyPercent: number };
  /** Messages/s through each hop over the measured window (from the apps' own counters). */
  hops: Record<string, number>;
  /** Means over the step from the apps' histograms (batch sizes, call and insert times). */
  internals: Record<string, number>;
  samples: (StepSample & { hops?: Record<string, number> })[];
}

/** Where each hop counts its messages: [hop, app, metric, labels]. */
const HOP_COUNTERS: [string, RunningApp['name'], string, Record<string, string>][] = [
  ['mqtt received', 'dmp-mqtt', 'dmp_mqtt_received_total', {}],
  ['mqtt → kernel accepted', 'dmp-mqtt', 'dmp_mqtt_forwarded_total', {}],
  ['kernel → RocketMQ sent', 'dmp-kernel', 'dmp_kernel_messages_total', { outcome: 'accepted' }],
  ['kernel RocketMQ sends (packs)', 'dmp-kernel', 'dmp_rocketmq_sent_total', { result: 'ok' }],
  ['data received (packs)', 'dmp-data', 'dmp_rocketmq_received_total', {}],
  ['data handled', 'dmp-data', 'dmp_data_messages_total', {}],
  ['mqtt intake paused s', 'dmp-mqtt', 'dmp_mqtt_intake_paused_seconds_total', {}],
];
/** Histograms whose mean over a step says where time goes: [label, app, metric (without _sum/_count)]. */
const HISTOGRAMS: [string, RunningApp['name'], string][] = [
  ['mqtt → kernel batch (msgs)', 'dmp-mqtt', 'dmp_mqtt_kernel_batch_size'],
  ['mqtt → kernel call (ms)', 'dmp-mqtt', 'dmp_mqtt_kernel_call_seconds'],
  ['kernel ingest batch (ms)', 'dmp-kernel', 'dmp_kernel_ingest_seconds'],
  ['kernel RocketMQ send (ms)', 'dmp-kernel', 'dmp_rocketmq_send_seconds'],
  ['data batch (rows)', 'dmp-data', 'dmp_data_batch_rows'],
  ['data ClickHouse insert (ms)', 'dmp-data', 'dmp_clickhouse_insert_seconds'],
  ['data end to end, app view (ms)', 'dmp-data', 'dmp_data_end_to_end_seconds'],
];

function hopCounters(texts: Map<string, string>): Record<string, number> {
  return Object.fromEntries(
    HOP_COUNTERS.map(([hop, app, metric, labels]) => [hop, metricSum(texts.get(app) ?? '', metric, labels)]),
  );
}

/** Mean of each histogram between two scrapes (seconds shown as ms). */
function histogramMeans(before: Map<string, string>, after: Map<string, string>): Record<string, number> {
  return Object.fromEntries(
    HISTOGRAMS.map(([label, app, metric]) => {
      const delta = (suffix: string) =>
        metricSum(after.get(app) ?? '', `${metric}${suffix}`) -
        metricSum(before.get(app) ?? '', `${metric}${suffix}`);
      const count = delta('_count');
      const scale = metric.endsWith('_seconds') ? 1000 : 1;
      return [label, count > 0 ? (delta('_sum') / count) * scale : Number.NaN];
    }),
  );
}

export const chainSuite: BenchSuite = {
  name: 'chain',
  description: `end-to-end chain on the local stack, ${DEVICES.toLocaleString('en-US')} devices, stepped rates until saturation, vs raw MQTT and ClickHouse`,
  run: runChain,
};

async function runChain(options: BenchOptions): Promise<SuiteResult> {
  const plan = stepPlan(options.quick, options);
  const run = randomBytes(3).toString('hex');
  const database = `dmp_bench_${run}`;
  const redisUrl = benchRedisUrl();
  const store = new BenchStore(database);
  const monitor = new ProcessMonitor();
  const apps: RunningApp[] = [];
  const log = (line: string) => console.log(`  [chain] ${line}`);

  try {
    await createBenchResources([BENCH_TOPICS], [BENCH_GROUPS]);
    const common = commonAppEnv(BENCH_TOPICS, database);
    const kernelGrpc = `127.0.0.1:${await freePort()}`;
    log(`run ${run}: starting dmp-data, dmp-kernel, dmp-mqtt (database ${database}, Redis db ${REDIS_DB})`);
    apps.push(await startApp('dmp-data', { ...common, ...BENCH_GROUPS }, { label: `bench-${run}-dmp-data` }));
    apps.push(
      await startApp(
        'dmp-kernel',
        { ...common, ...kernelAppEnv(run, kernelGrpc) },
        { label: `bench-${run}-dmp-kernel` },
      ),
    );
    apps.push(
      await startApp(
        'dmp-mqtt',
        { ...common, ...mqttAppEnv(run, kernelGrpc) },
        { label: `bench-${run}-dmp-mqtt` },
      ),
    );
    for (const app of apps) monitor.track(app.name, app.process.pid);
    monitor.track('bench', process.pid);
    for (const server of STACK_SERVERS) monitor.track(server.name, findProcess(server.pattern));

    const baselineMs = options.quick ? 10_000 : 20_000;
    log(`raw ClickHouse bulk insert (${baselineMs / 1000} s)…`);
    monitor.mark();
    const rawClickhouse = await store.rawInsertRate({ durationMs: baselineMs });
    const rawClickhouseResources = monitor.window();
    log(`  ${formatNumber(Math.round(rawClickhouse.rowsPerSecond))} rows/s`);

    const rawOffered = options.quick ? 20_000 : 40_000;
    log(`raw MQTT pass-through, offered ${formatNumber(rawOffered)} msg/s (${baselineMs / 1000} s)…`);
    monitor.mark();
    const rawMqtt = await rawMqttPassThrough({
      url: stack.mqtt.url,
      run,
      devices: DEVICES,
      offered: rawOffered,
      durationMs: baselineMs,
    });
    const rawMqttResources = monitor.window();
    log(
      `  received ${formatNumber(Math.round(rawMqtt.receivedPerSecond))} msg/s, acked ${formatNumber(Math.round(rawMqtt.ackedPerSecond))} msg/s, lost ${rawMqtt.lost}`,
    );

    // Unmeasured: a stack started moments ago has a cold RocketMQ proxy (JIT-compiling for minutes, twice
    // its CPU), which would make the first step look slower than the next.
    const warmUp = { ...plan, stepMs: plan.warmupMs * 2 };
    await runStep({ run, index: WARM_UP, target: plan.rates[0], plan: warmUp, store, monitor, apps, log });

    const steps: StepResult[] = [];
    for (const [index, target] of plan.rates.entries()) {
      const step = await runStep({ run, index, target, plan, store, monitor, apps, log });
      steps.push(step);
      if (step.verdict.saturated) {
        log(`saturated at ${formatNumber(target)} msg/s: ${step.verdict.reason}`);
        break;
      }
    }
    return report({
      run,
      database,
      plan,
      steps,
      rawMqtt,
      rawClickhouse,
      rawMqttResources,
      rawClickhouseResources,
    });
  } finally {
    await Promise.all(apps.reverse().map((app) => app.stop()));
    if (!options.keep)
      await store.drop().catch((error: unknown) => log(`drop ${database}: ${String(error)}`));
    else log(`kept ClickHouse database ${database}`);
    await store.close();
    await cleanRedis(redisUrl, runRedisPatterns(run)).catch((error: unknown) =>
      log(`Redis clean-up: ${String(error)}`),
    );
  }
}

async function runStep({
  run,
  index,
  target,
  plan,
  store,
  monitor,
  apps,
  log,
}: {
  run: string;
  index: number;
  target: number;
  plan: StepPlan;
  store: BenchStore;
  monitor: ProcessMonitor;
  apps: readonly RunningApp[];
  log: (line: string) => void;
}): Promise<StepResult> {
  const prefix = `b${run}s${index}`;
  const mix = fleetMix(target, DEVICES);
  const probe = new LatencyProbe(store.client, store.rawTable);
  const probeMessages = (target * plan.stepMs * PROBE_DEVICES) / 1000 / DEVICES;
  const sampleEvery = Math.max(1, Math.round(probeMessages / LATENCY_SAMPLES));
  const isProbeDevice = (deviceId: string) => Number(deviceId.slice(prefix.length + 1)) < PROBE_DEVICES;
  let published = 0;
  const fleet = new DeviceFleet({
    url: stack.mqtt.url,
    devices: DEVICES,
    rate: mix.changesPerSecond,
    timeCompression: mix.timeCompression,
    heartbeatIntervalMs: 0,
    deviceIdPrefix: prefix,
    clientIdPrefix: `bench-${run}-s${index}`,
    record: false,
    onPublish: (sent) => {
      if (sent.messageId && isProbeDevice(sent.deviceId) && published++ % sampleEvery === 0)
        probe.add(sent.deviceId, sent.messageId, sent.sentAt);
    },
  });
  log(
    `${index === WARM_UP ? 'warm-up' : `step ${index + 1}`}: offering ${formatNumber(target)} msg/s (${formatNumber(Math.round(mix.changesPerSecond))} changes + ` +
      `${formatNumber(Math.round(mix.snapshotsPerSecond))} snapshots/s, time ×${mix.timeCompression.toFixed(1)}) for ${plan.stepMs / 1000} s`,
  );
  await fleet.connect();
  // Rows of this step: the table's rows now minus before (the last step drained or stalled).
  const rowsBefore = await store.rows();
  const stepStartedAt = await store.serverSeconds();
  const stepRows = async () => (await store.rows()) - rowsBefore;
  const samples: StepResult['samples'] = [];
  const metricsBefore = await scrape(apps);
  const started = Date.now();
  const sampler = poll(1_000, async () => {
    const stats = fleet.stats();
    const [rows, texts] = await Promise.all([stepRows(), scrape(apps)]);
    samples.push({
      atMs: Date.now() - started,
      sent: stats.sent,
      acked: stats.acked,
      rows,
      hops: hopCounters(texts),
    });
    monitor.sample();
  });
  monitor.mark();
  probe.start();
  const stats = await fleet.run({ durationMs: plan.stepMs, flushTimeoutMs: 60_000 });
  const resources = monitor.window();
  const internals = histogramMeans(metricsBefore, await scrape(apps));
  const publishedAt = Date.now();

  // Drain: until every acknowledged message is stored, or no row came for 5 s, or the timeout.
  let lastRows = -1;
  let lastChange = publishedAt;
  let drained = false;
  while (Date.now() - publishedAt < plan.drainTimeoutMs) {
    const rows = await stepRows();
    if (rows !== lastRows) [lastRows, lastChange] = [rows, Date.now()];
    if (rows >= stats.acked) {
      drained = true;
      break;
    }
    if (Date.now() - lastChange > 5_000) break;
    await sleep(250);
  }
  await sampler.stop();
  await sleep(300); // one more probe cycle for rows that just arrived
  await probe.stop();
  await fleet.close();
  const stored = await store.distinct(prefix);
  const written = await store.rowsWrittenSince(stepStartedAt);
  const rowsWrittenPerMessage = Object.fromEntries(
    Object.entries(written).map(([table, rows]) => [table, rows / Math.max(1, stored.messages)]),
  );
  rowsWrittenPerMessage.all =
    Object.values(written).reduce((a, b) => a + b, 0) / Math.max(1, stored.messages);
  const verdict = judgeStep(samples, target, plan);
  const step: StepResult = {
    target,
    mix,
    verdict,
    sent: stats.sent,
    acked: stats.acked,
    failed: stats.failed,
    skipped: stats.skipped,
    storedMessages: stored.messages,
    storedRows: stored.rows,
    rowsWrittenPerMessage,
    lost: stats.sent - stored.messages,
    duplicates: stored.rows - stored.messages,
    drainMs: lastChange - publishedAt,
    drained,
    latencyMs: {
      ...summarizeLatencies(probe.latenciesMs),
      resolutionMs: probe.resolutionMs,
      notFound: probe.waiting,
    },
    publishAckMs: stats.ackLatencyMs,
    resources,
    hops: { ...hopRates(samples, plan), 'ClickHouse stored': verdict.throughput },
    internals,
    samples,
  };
  log(
    `  stored ${formatNumber(Math.round(verdict.throughput))} msg/s, p50 ${formatNumber(step.latencyMs.p50)} ms, ` +
      `p99 ${formatNumber(step.latencyMs.p99)} ms, lost ${step.lost}, drained in ${(step.drainMs / 1000).toFixed(1)} s, ` +
      `${rowsWrittenPerMessage.all.toFixed(2)} ClickHouse rows written per message` +
      (verdict.saturated ? ` — ${verdict.reason}` : ''),
  );
  return step;
}

const usageCell = (usage: ProcessUsage | undefined) =>
  usage ? `${Math.round(usage.cpuPercent)}% ${Math.round(usage.rssMiB)}M` : '-';

function report({
  run,
  database,
  plan,
  steps,
  rawMqtt,
  rawClickhouse,
  rawMqttResources,
  rawClickhouseResources,
}: {
  run: string;
  database: string;
  plan: StepPlan;
  steps: StepResult[];
  rawMqtt: RawMqttResult;
  rawClickhouse: Awaited<ReturnType<BenchStore['rawInsertRate']>>;
  rawMqttResources: StepResult['resources'];
  rawClickhouseResources: StepResult['resources'];
}): SuiteResult {
  const best = headline(steps);
  const bestStep = steps.find((s) => s.target === best.bestSustainedTarget);
  const lost = steps.reduce((sum, s) => sum + s.lost, 0);
  const round = (v: number) => Math.round(v);
  const cores = availableParallelism();
  const usageOf = (r: StepResult['resources'], name: string) => r.processes.find((p) => p.name === name);
  const cpuOf = (r: StepResult['resources'], name: string) => usageOf(r, name)?.cpuPercent;
  const budgetOf = (s: StepResult) =>
    cpuBudget(
      Object.fromEntries(s.resources.processes.map((p) => [p.name, p.cpuPercent])),
      s.verdict.throughput,
      APPS,
      cores,
    );
  // Per message, the step that stored the most costs the least: the machine's best case.
  const peakStep = steps.find((s) => s.verdict.throughput === best.peak);
  const peakBudget = peakStep && budgetOf(peakStep);
  const measurements: Measurement[] = [
    {
      name: 'pipeline: best sustained end to end (kept up)',
      value: round(best.bestSustained),
      unit: 'msg/s',
    },
    { name: '  … at offered', value: best.bestSustainedTarget ?? Number.NaN, unit: 'msg/s' },
    { name: '  … end-to-end p50', value: bestStep?.latencyMs.p50 ?? Number.NaN, unit: 'ms' },
    { name: '  … end-to-end p99', value: bestStep?.latencyMs.p99 ?? Number.NaN, unit: 'ms' },
    { name: 'pipeline: peak stored rate (any step)', value: round(best.peak), unit: 'msg/s' },
    { name: 'messages lost (all steps, after drain)', value: lost, unit: 'msg' },
    {
      name: 'ClickHouse rows written per stored message (peak step)',
      value: peakStep?.rowsWrittenPerMessage.all ?? Number.NaN,
      unit: 'rows',
    },
    { name: 'raw MQTT pass-through (QoS 1)', value: round(rawMqtt.receivedPerSecond), unit: 'msg/s' },
    { name: 'raw ClickHouse bulk insert', value: round(rawClickhouse.rowsPerSecond), unit: 'rows/s' },
    {
      name: 'pipeline / raw MQTT',
      value: (best.bestSustained / rawMqtt.receivedPerSecond) * 100,
      unit: '%',
    },
    {
      name: 'pipeline / raw ClickHouse',
      value: (best.bestSustained / rawClickhouse.rowsPerSecond) * 100,
      unit: '%',
    },
    // What the machine allows: its cores ÷ the CPU a message costs (the table of CPU per message has each step).
    {
      name: `CPU budget per message at ${formatNumber(TARGET_RATE)} msg/s on ${cores} cores`,
      value: (cores * 1e6) / TARGET_RATE,
      unit: 'µs',
    },
    {
      name: 'raw MQTT: publisher, subscriber and Mosquitto per message',
      value: round(
        microsPerMessage(
          (cpuOf(rawMqttResources, 'bench') ?? 0) + (cpuOf(rawMqttResources, 'mosquitto') ?? 0),
          rawMqtt.receivedPerSecond,
        ),
      ),
      unit: 'µs',
    },
    {
      name: 'peak step: CPU per stored message, all',
      value: round(peakBudget?.allUs ?? Number.NaN),
      unit: 'µs',
    },
    {
      name: '  … of which the others (servers, bench process)',
      value: round(peakBudget?.othersUs ?? Number.NaN),
      unit: 'µs',
    },
    {
      name: '  … ceiling if the apps cost nothing',
      value: round(peakBudget?.ceilingWithoutApps ?? Number.NaN),
      unit: 'msg/s',
    },
  ];
  const names = [...APPS, 'bench', 'mosquitto', 'rocketmq', 'clickhouse', 'redis'];
  const writtenTables = [
    ...new Set(steps.flatMap((s) => Object.keys(s.rowsWrittenPerMessage).filter((t) => t !== 'all'))),
  ].sort();
  const resourceRow = (label: string, r: StepResult['resources']) => [
    label,
    ...names.map((n) => usageCell(usageOf(r, n))),
    round(r.machineBusyPercent),
  ];
  return {
    summary: chainSummary(
      steps.map((s) => ({ ...s, appsCpuMicrosPerMessage: budgetOf(s).appsUs })),
      rawMqtt.receivedPerSecond,
    ),
    measurements,
    tables: [
      {
        title:
          'steps (stored/s and backlog over the window after the warm-up; latency: publish → row visible)',
        columns: [
          'offered/s',
          'published/s',
          'broker acked/s',
          'stored/s',
          'stored÷offered %',
          'backlog Δ/s',
          'p50 ms',
          'p99 ms',
          'lost',
          'dup',
          'drain s',
          'verdict',
        ],
        rows: steps.map((s) => [
          s.target,
          round(s.verdict.publishedPerSecond),
          round(s.verdict.ackedPerSecond),
          round(s.verdict.throughput),
          round((s.verdict.throughput / s.target) * 100),
          round(s.verdict.backlogGrowthPerSecond),
          round(s.latencyMs.p50),
          round(s.latencyMs.p99),
          s.lost,
          s.duplicates,
          Number((s.drainMs / 1000).toFixed(1)),
          s.verdict.saturated ? 'saturated' : 'kept up',
        ]),
      },
      {
        title:
          'per hop (msg/s over the window; "mqtt intake paused s" = seconds paused per second) and means from the apps\' histograms',
        columns: [
          'offered/s',
          ...HOP_COUNTERS.map(([hop]) => hop),
          'ClickHouse stored',
          ...HISTOGRAMS.map(([label]) => label),
        ],
        rows: steps.map((s) => [
          s.target,
          ...HOP_COUNTERS.map(([hop]) =>
            Number((s.hops[hop] ?? Number.NaN).toFixed(hop.endsWith(' s') ? 2 : 0)),
          ),
          round(s.hops['ClickHouse stored']),
          ...HISTOGRAMS.map(([label]) => Number((s.internals[label] ?? Number.NaN).toFixed(1))),
        ]),
      },
      {
        title:
          'ClickHouse rows written per stored message, by table (rows of the parts inserts and views made during the step)',
        columns: ['offered/s', ...writtenTables, 'all'],
        rows: steps.map((s) => [
          s.target,
          ...[...writtenTables, 'all'].map((t) => Number((s.rowsWrittenPerMessage[t] ?? 0).toFixed(3))),
        ]),
      },
      {
        title: 'resources while publishing (CPU % of one core, peak RSS MiB; machine: % of all cores)',
        columns: ['phase', ...names, 'machine %'],
        rows: [
          resourceRow('raw ClickHouse', rawClickhouseResources),
          resourceRow('raw MQTT', rawMqttResources),
          ...steps.map((s) => resourceRow(`${formatNumber(s.target)}/s`, s.resources)),
        ],
      },
      {
        // Steadier than the saturation point on a noisy machine: what each process spends per message,
        // and the rates the machine's cores allow at that cost, with the apps and without them.
        title: `CPU per message stored (µs of one core per stored message: CPU % ÷ stored/s); ceilings: ${cores} cores ÷ µs per message`,
        columns: ['offered/s', ...names, 'all', 'apps', 'others', 'ceiling/s', 'ceiling/s, apps free'],
        rows: steps.map((s) => {
          const budget = budgetOf(s);
          return [
            s.target,
            ...names.map((n) => {
              const percent = cpuOf(s.resources, n);
              return percent === undefined ? '-' : round(microsPerMessage(percent, s.verdict.throughput));
            }),
            round(budget.allUs),
            round(budget.appsUs),
            round(budget.othersUs),
            round(budget.ceiling),
            round(budget.ceilingWithoutApps),
          ];
        }),
      },
    ],
    details: {
      run,
      database,
      devices: DEVICES,
      plan,
      traceSampleRatio: Number(TRACE_SAMPLE_RATIO),
      latencyMethod: `sampled messages (≈2,000 per step, from the fleet's first ${PROBE_DEVICES} devices): publish time (bench clock) to the first poll of telemetry_raw that finds the row; an upper bound within latencyMs.resolutionMs`,
      lostDefinition: 'sent − distinct message ids in telemetry_raw after the drain',
      rawMqtt,
      rawMqttResources,
      rawClickhouse,
      rawClickhouseResources,
      steps,
    },
  };
}
