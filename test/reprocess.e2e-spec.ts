/**
 * Reprocessing history as alarm generations (`dmp rules reprocess | generations | revert`), end to end
 * on the real local stack: dmp-kernel and dmp-data run as real processes and raise alarms, commands
 * (MQTT) and webhooks (a local HTTP receiver) live; the test corrects the stored data
 * (`dmp telemetry correct`), reprocesses it with a changed rule set through the built CLI, and checks
 * the generation against the back-test, the live alarms, the analysts' query (docs/analysts.md) and a
 * revert — and that nothing was sent again. Then it kills the CLI (SIGKILL) in the middle of a
 * generation of many devices and runs it again: the same rows, once. Own database, topics and groups
 * (`dmp_reprocess_test_*`), own Redis namespace, dropped at the end.
 */
import {
  ClickHouseRepository,
  effectiveAlarmsSql,
  generatedAlarmId,
  GENERATED_ALARMS_TABLE,
  stringList,
  Tables,
  toTelemetryRows,
  type AlarmRowAsRead,
  type GenerationRecord,
} from '@dmp/clickhouse';
import type { TelemetryRequest } from '@dmp/contracts';
import { REPO_ROOT, stack, waitFor } from '@dmp/testing';
import { Redis } from 'ioredis';
import mqtt, { type MqttClient } from 'mqtt';
import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { once } from 'node:events';
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import type { BacktestReport } from '../tools/cli/src/commands/rules';
import {
  createPipelineResources,
  deleteKeys,
  pipelineNames,
  registerDevice,
  startHookReceiver,
  startPipeline,
  writeRulesDir,
  type HookReceiver,
  type Pipeline,
} from './support/rule-pipeline';

const names = pipelineNames('reprocess');
const { run, database } = names;
const exec = promisify(execFile);
const CLI = join(REPO_ROOT, 'dist/tools/cli/src/main.js');
const dev = (name: string) => `reprocess-${run}-${name}`;

/** Live: hot above 30 °C, with a command and a webhook; the changed version: above 30.5 °C. */
const rule = (threshold: number, hookUrl: string) => `rules:
  - id: hot
    name: Too hot
    when: state.latest.temperature > ${threshold}
    clear: state.latest.temperature < 28.0
    actions:
      - alarm: { severity: major, message: 'Temperature {{ state.latest.temperature }} °C' }
      - command: { name: fan.set, params: { on: true } }
      - webhook: { url: ${hookUrl} }
`;

/** A live or generated alarm as the queries below read it; `source` from the analysts' query. */
type AlarmRow = Pick<
  AlarmRowAsRead,
  'alarm_id' | 'device_id' | 'rule_id' | 'state' | 'started_at_ms' | 'raised_at_ms' | 'cleared_at_ms'
> & { source?: string };

/** What an alarm is, whoever stored it: rule, state and times, relative to `t0`. */
const shape = (rows: readonly AlarmRow[], t0: number) =>
  rows
    .map((r) => [
      r.device_id,
      r.rule_id,
      r.state,
      Number(r.started_at_ms) - t0,
      Number(r.raised_at_ms) - t0,
      Number(r.cleared_at_ms) === 0 ? 0 : Number(r.cleared_at_ms) - t0,
    ])
    .sort((a, b) => String(a).localeCompare(String(b), 'en', { numeric: true }));

/** The back-test's alarms in the same shape: each raise, and its clear if any. */
function backtestShape(report: BacktestReport, t0: number) {
  const alarms: (string | number)[][] = [];
  const open = new Map<string, (string | number)[]>();
  for (const t of report.transitions) {
    const key = `${t.deviceId}\u0000${t.ruleId}`;
    const at = Date.parse(t.ts) - t0;
    if (t.transition === 'raised') {
      const alarm = [t.deviceId, t.ruleId, 'active', at, at, 0];
      alarms.push(alarm);
      open.set(key, alarm);
    } else if (t.transition === 'cleared') {
      const alarm = open.get(key)!;
      alarm[2] = 'cleared';
      alarm[5] = at;
      open.delete(key);
    }
  }
  return alarms.sort((a, b) => String(a).localeCompare(String(b), 'en', { numeric: true }));
}

describe('reprocessing history as alarm generations', { timeout: 300_000 }, () => {
  let pipeline: Pipeline | undefined;
  let candidateDir: string;
  let hookReceiver: HookReceiver | undefined;
  let device: MqttClient;
  const hooks: string[] = [];
  const commands: string[] = [];
  const redis = new Redis(stack.redis.url, { lazyConnect: true });
  const clickhouse = new ClickHouseRepository({ ...stack.clickhouse, database });

  const cli = async (...args: string[]) => {
    const { stdout } = await exec(process.execPath, [CLI, ...args, '--database', database]);
    return stdout;
  };
  /** A CLI run expected to fail: its exit code and what it said. */
  const cliFails = (...args: string[]) =>
    exec(process.execPath, [CLI, ...args, '--database', database]).then(
      () => ({ code: 0, stderr: '' }),
      (error: { code: number; stderr: string }) => ({ code: error.code, stderr: error.stderr }),
    );
  const ingest = async (messages: TelemetryRequest[]) => {
    const refused = (await pipeline!.ingest(messages)).filter((o) => !o.accepted);
    if (refused.length) throw new Error(`refused: ${JSON.stringify(refused)}`);
  };
  let counter = 0;
  const telemetry = (deviceId: string, ts: number, temperature: number): TelemetryRequest => ({
    deviceId,
    messageId: `${deviceId}-m${++counter}`,
    kind: 'KIND_TELEMETRY',
    ts,
    receivedAt: ts,
    metrics: { temperature: { number: temperature } },
  });
  const liveAlarms = (deviceId: string) =>
    clickhouse.query<AlarmRow>(
      `SELECT alarm_id, device_id, rule_id, toString(state) AS state, started_at_ms, raised_at_ms, cleared_at_ms
       FROM alarms FINAL WHERE device_id = '${deviceId}' ORDER BY started_at_ms`,
    );

  before(async () => {
    await createPipelineResources(names);
    await redis.connect();
    hookReceiver = await startHookReceiver((body) => {
      hooks.push(body);
    });
    const hookUrl = `${hookReceiver.url}/hooks/hot`;
    candidateDir = await writeRulesDir('dmp-reprocess-candidate-', { 'hot.yaml': rule(30.5, hookUrl) });

    device = await mqtt.connectAsync(stack.mqtt.url, {
      protocolVersion: 5,
      clientId: `reprocess-e2e-${run}`,
      clean: true,
    });
    device.on('message', (topic) => {
      if (topic.startsWith(`devices/reprocess-${run}-`)) commands.push(topic);
    });
    await device.subscribeAsync('devices/+/command', { qos: 1 });

    pipeline = await startPipeline(names, {
      rules: { 'hot.yaml': rule(30, hookUrl) },
      data: { ALARM_BATCH_MAX_WAIT_MS: '50', DATA_AGGREGATION_LATENESS_MS: '0' },
      kernel: {
        KERNEL_WEBHOOK_ALLOW_NETWORKS: '127.0.0.1/32', // the test's receiver is on loopback
        ADMIN_TOKEN: `reprocess-e2e-${run}-admin-token`,
      },
    });
  });

  after(async () => {
    await pipeline?.stop();
    await device?.endAsync().catch(() => undefined);
    hookReceiver?.close();
    await deleteKeys(redis, `dmp:device:reprocess-${run}-*`, `${names.namespace}:*`);
    await redis.quit();
    await clickhouse.command(`DROP DATABASE IF EXISTS ${database}`).catch(() => undefined);
    await clickhouse.close();
    await rm(candidateDir, { recursive: true, force: true });
  });

  it('applies a changed rule set to corrected history as a generation, sends nothing, and reverts', async () => {
    const id = dev('history');
    await registerDevice(redis, id, { tenantId: 't', productId: '', siteId: 's', tags: {} });
    const t0 = Math.floor((Date.now() - 3_600_000) / 60_000) * 60_000; // a minute an hour ago
    const series: [number, number][] = [
      [0, 25],
      [5_000, 32], // live: raised
      [10_000, 33],
      [20_000, 27], // cleared
      [30_000, 31], // raised
      [40_000, 26], // cleared
      [50_000, 25],
    ];
    await ingest(series.map(([offset, c]) => telemetry(id, t0 + offset, c)));
    const live = await waitFor(
      'the live alarms stored, both cleared',
      async () => {
        const rows = await liveAlarms(id).catch(() => []);
        return rows.length === 2 && rows.every((r) => r.state === 'cleared') ? rows : undefined;
      },
      { timeoutMs: 60_000 },
    );
    assert.deepEqual(shape(live, t0), [
      [id, 'hot', 'cleared', 5_000, 5_000, 20_000],
      [id, 'hot', 'cleared', 30_000, 30_000, 40_000],
    ]);
    await waitFor('the live commands and webhooks', () => commands.length === 2 && hooks.length === 2, {
      timeoutMs: 60_000,
    });

    // The sensor read 2 °C high: correct the stored data (the kernel's live state is history now).
    const range = ['--from', String(t0), '--to', String(t0 + 60_000)];
    await cli(
      'telemetry',
      'correct',
      'temperature',
      '--offset',
      '-2',
      '--devices',
      id,
      ...range,
      '--reason',
      'calibration',
    );

    // The dry run is the back-test: with 30.5 °C, only 31 °C (was 33) at 10 s raises.
    const dry = JSON.parse(
      await cli('rules', 'reprocess', '--rules', candidateDir, ...range, '--device', id, '--json'),
    ) as BacktestReport & { dryRun: boolean };
    assert.equal(dry.dryRun, true);
    assert.deepEqual(backtestShape(dry, t0), [[id, 'hot', 'cleared', 10_000, 10_000, 20_000]]);
    assert.deepEqual(
      await clickhouse.query(`SELECT * FROM alarm_generations`),
      [],
      'a dry run writes nothing',
    );

    const apply = () =>
      cli(
        'rules',
        'reprocess',
        '--rules',
        candidateDir,
        '--version',
        dry.rulesetVersion,
        ...range,
        '--device',
        id,
        '--apply',
        '--reason',
        'after calibration',
        '--by',
        'analyst',
        '--json',
      );
    const applied = JSON.parse(await apply()) as GenerationRecord & { step: string };
    assert.deepEqual(
      [
        applied.step,
        applied.state,
        applied.ruleset_version,
        applied.device_ids,
        applied.messages,
        applied.alarms,
      ],
      ['write', 'applied', dry.rulesetVersion, [id], series.length, 1],
    );
    const generation = applied.generation_id;
    const generated = await clickhouse.query<AlarmRow>(
      `SELECT alarm_id, device_id, rule_id, toString(state) AS state, started_at_ms, raised_at_ms, cleared_at_ms
       FROM ${GENERATED_ALARMS_TABLE} FINAL WHERE generation_id = '${generation}'`,
    );
    assert.deepEqual(
      shape(generated, t0),
      backtestShape(dry, t0),
      "the generation's alarms are the back-test's",
    );
    assert.deepEqual(
      generated.map((r) => r.alarm_id),
      [generatedAlarmId(generation, 'hot', id, t0 + 10_000)],
    );
    assert.deepEqual(await liveAlarms(id), live, 'the live alarms are untouched');

    // Nothing was sent again: a live marker after the reprocessing is the only new command and webhook.
    await ingest([telemetry(id, Date.now(), 35)]);
    await waitFor('the marker command and webhook', () => commands.length >= 3 && hooks.length >= 3, {
      timeoutMs: 60_000,
    });
    await waitFor('the marker alarm stored', async () => (await liveAlarms(id)).length === 3, {
      timeoutMs: 60_000,
    });
    assert.deepEqual([commands.length, hooks.length], [3, 3]);

    // The analysts' query: the range as the generation has it.
    const view = () =>
      clickhouse.query<AlarmRow>(effectiveAlarmsSql({ from: t0, to: t0 + 60_000, deviceIds: [id] }));
    assert.deepEqual(
      (await view()).map((r) => [r.source, r.alarm_id]),
      generated.map((r) => [generation, r.alarm_id]),
    );

    // The operator's view of the same: `dmp rules alarms`.
    const shown = JSON.parse(await cli('rules', 'alarms', ...range, '--device', id, '--json')) as AlarmRow[];
    assert.deepEqual(
      shown.map((r) => [r.source, r.alarm_id]),
      generated.map((r) => [generation, r.alarm_id]),
    );

    // The same request again: applied before, nothing written.
    assert.equal((JSON.parse(await apply()) as { step: string }).step, 'applied-before');
    const listed = JSON.parse(await cli('rules', 'generations', '--json')) as GenerationRecord[];
    assert.deepEqual(
      listed.map((g) => [g.generation_id, g.state, g.requested_by, g.reason]),
      [[generation, 'applied', 'analyst', 'after calibration']],
    );

    // Revert: the live alarms count again; recorded, the rows stay; a second revert changes nothing.
    const reverted = JSON.parse(
      await cli('rules', 'revert', generation, '--by', 'analyst', '--json'),
    ) as GenerationRecord & {
      changed: boolean;
    };
    assert.deepEqual([reverted.changed, reverted.state, reverted.reverted_by], [true, 'reverted', 'analyst']);
    assert.deepEqual(
      (await view()).map((r) => [r.source, r.alarm_id]),
      live.map((r) => ['live', r.alarm_id]),
    );
    assert.equal(
      (JSON.parse(await cli('rules', 'revert', generation, '--json')) as { changed: boolean }).changed,
      false,
    );
    const [{ n }] = await clickhouse.query<{ n: string }>(
      `SELECT count() AS n FROM ${GENERATED_ALARMS_TABLE} FINAL WHERE generation_id = '${generation}'`,
    );
    assert.equal(Number(n), 1);
    // Applied again on request: the same generation, the same rows.
    assert.equal((JSON.parse(await apply()) as { step: string }).step, 'reapply');
    assert.deepEqual(
      (await view()).map((r) => r.source),
      [generation],
    );

    // Refused, with their codes.
    const unknown = await cliFails('rules', 'revert', 'gen-000000000000000000000000');
    assert.equal(unknown.code, 1);
    assert.match(unknown.stderr, /^DMP_ERR_GENERATION_NOT_FOUND: /m);
    const wrongVersion = await cliFails(
      'rules',
      'reprocess',
      '--rules',
      candidateDir,
      '--version',
      '000000000000',
      ...range,
      '--apply',
      '--reason',
      'x',
    );
    assert.match(wrongVersion.stderr, /^DMP_ERR_RULESET_VERSION_UNKNOWN: /m);
    const reversed = await cliFails(
      'rules',
      'reprocess',
      '--rules',
      candidateDir,
      '--from',
      String(t0 + 60_000),
      '--to',
      String(t0),
      '--apply',
      '--reason',
      'x',
    );
    assert.match(reversed.stderr, /^DMP_ERR_REPROCESS_INVALID: /m);
    const future = await cliFails(
      'rules',
      'reprocess',
      '--rules',
      candidateDir,
      '--from',
      String(t0),
      '--to',
      String(Date.now() + 3_600_000),
      '--apply',
      '--reason',
      'x',
    );
    assert.match(future.stderr, /^DMP_ERR_REPROCESS_INVALID: /m);
    const noReason = await cliFails('rules', 'reprocess', '--rules', candidateDir, ...range, '--apply');
    assert.match(noReason.stderr, /^DMP_ERR_REPROCESS_INVALID: .*reason/m);
  });

  it('finishes a generation killed (SIGKILL) in the middle: the same rows, once', async () => {
    // Stored history of many devices, written as dmp-data writes it: 20 messages each, two episodes.
    const devices = Array.from({ length: 300 }, (_, i) => dev(`fleet-${String(i).padStart(3, '0')}`));
    const t0 = Math.floor((Date.now() - 7_200_000) / 60_000) * 60_000;
    const temps = [25, 32, 33, 27, 25, 31, 34, 26, 25, 25, 25, 31, 31, 31, 27, 25, 25, 25, 25, 25];
    const rows = devices.flatMap((deviceId, d) =>
      temps.map(
        (c, i) =>
          toTelemetryRows({
            deviceId,
            messageId: `${deviceId}-h${i}`,
            kind: 'telemetry',
            ts: t0 + i * 1_000 + d,
            metrics: { temperature: c },
            receivedAt: t0 + i * 1_000 + d,
            tenantId: 't',
            productId: '',
            siteId: 's',
          }).raw,
      ),
    );
    await clickhouse.insertRows(Tables.raw, rows);
    const range = ['--from', String(t0), '--to', String(t0 + 60_000)];
    const fleet = devices.flatMap((d) => ['--device', d]);
    const args = [
      CLI,
      'rules',
      'reprocess',
      '--rules',
      candidateDir,
      ...range,
      ...fleet,
      '--apply',
      '--reason',
      'fleet',
      '--json',
      '--database',
      database,
    ];

    const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    const exited = once(child, 'exit');
    const written = await waitFor(
      'some of the generation written',
      async () => {
        const [row] = await clickhouse.query<{ id: string }>(
          `SELECT generation_id AS id FROM alarm_generations FINAL WHERE reason = 'fleet'`,
        );
        if (!row) return undefined;
        const [{ devices }] = await clickhouse.query<{ devices: string }>(
          `SELECT uniqExact(device_id) AS devices FROM ${GENERATED_ALARMS_TABLE} WHERE generation_id = '${row.id}'`,
        );
        return Number(devices) > 0 ? row : undefined;
      },
      { timeoutMs: 60_000, intervalMs: 20 },
    );
    child.kill('SIGKILL');
    const [code, signal] = (await exited) as [number | null, string | null];
    assert.equal(signal, 'SIGKILL', `the CLI ended on its own (${code}) before it was killed`);
    const [interrupted] = await clickhouse.query<{ state: string; devices: string }>(
      `SELECT toString(state) AS state,
              (SELECT uniqExact(device_id) FROM ${GENERATED_ALARMS_TABLE} WHERE generation_id = '${written.id}') AS devices
       FROM alarm_generations FINAL WHERE generation_id = '${written.id}'`,
    );
    assert.equal(interrupted.state, 'requested', 'killed before it was applied');
    assert.ok(
      Number(interrupted.devices) < devices.length,
      `killed mid-run: ${interrupted.devices} device(s) written`,
    );
    // Nothing of it is read while interrupted: the analysts see the live alarms (none here).
    assert.deepEqual(
      await clickhouse.query(
        effectiveAlarmsSql({ from: t0, to: t0 + 60_000, deviceIds: devices.slice(0, 3) }),
      ),
      [],
    );

    const { stdout } = await exec(process.execPath, args, { maxBuffer: 16 * 1024 * 1024 });
    const resumed = JSON.parse(stdout) as GenerationRecord & { step: string };
    assert.deepEqual(
      [resumed.generation_id, resumed.step, resumed.state, resumed.messages, resumed.alarms],
      [written.id, 'resume', 'applied', rows.length, devices.length * 3],
    );
    const [counts] = await clickhouse.query<{ rows: string; alarms: string; devices: string }>(
      `SELECT count() AS rows, uniqExact(alarm_id) AS alarms, uniqExact(device_id) AS devices
       FROM ${GENERATED_ALARMS_TABLE} FINAL WHERE generation_id = '${written.id}'`,
    );
    assert.deepEqual(
      [Number(counts.rows), Number(counts.alarms), Number(counts.devices)],
      [devices.length * 3, devices.length * 3, devices.length],
    );
    // Equal to the back-test of the same history.
    const report = JSON.parse(
      (
        await exec(
          process.execPath,
          [
            CLI,
            'rules',
            'backtest',
            '--rules',
            candidateDir,
            ...range,
            ...fleet,
            '--database',
            database,
            '--json',
          ],
          { maxBuffer: 64 * 1024 * 1024 },
        )
      ).stdout,
    ) as BacktestReport;
    const generated = await clickhouse.query<AlarmRow>(
      `SELECT alarm_id, device_id, rule_id, toString(state) AS state, started_at_ms, raised_at_ms, cleared_at_ms
       FROM ${GENERATED_ALARMS_TABLE} FINAL WHERE generation_id = '${written.id}' AND device_id IN (${stringList(devices)})`,
    );
    assert.deepEqual(shape(generated, t0), backtestShape(report, t0));
    const view = await clickhouse.query<AlarmRow>(
      effectiveAlarmsSql({ from: t0, to: t0 + 60_000, deviceIds: devices }),
    );
    assert.equal(view.length, devices.length * 3);
    assert.ok(view.every((r) => r.source === written.id));
  });
});
