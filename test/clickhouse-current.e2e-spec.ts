/**
 * Every statement DMP sends to ClickHouse, on a current engine and on the local stack's 18.16: the
 * schema through the real migrations (gated on the `version()` each engine reports), telemetry, alarms
 * and dead letters through dmp-data's own writers, the per-minute aggregation through its aggregator,
 * retention, the CLI's back-test and dead-letter queries, and every SQL block of docs/analysts.md.
 *
 * The current engine is chdb-core (ClickHouse 26.x in-process, installed by scripts/bootstrap.sh),
 * served over ClickHouse's HTTP interface by tools/chdb/server.py, so the code under test talks to it
 * through @clickhouse/client exactly as to a server. No statement is written here: each comes from the
 * code that issues it. DMP sends no query parameters (18.16 has none): values are quoted literals.
 * Own database `dmp_test_current_<random>` on each engine, dropped at the end.
 */
import {
  applyCorrection,
  applyMigrations,
  applyRetention,
  type CorrectionRequest,
  effectiveAlarmsSql,
  listGenerations,
  revertGeneration,
  listCorrections,
  ClickHouseRepository,
  clusterStatements,
  type DeadLetterRecord,
  migrations,
  SCHEMA_MIGRATIONS,
  serverFeatures,
  type ServerVersion,
  stringLiteral,
  Tables,
  toTelemetryRows,
} from '@dmp/clickhouse';
import { cleanTelemetry, type NormalizedTelemetry } from '@dmp/contracts';
import { compileRuleSet, readRuleFiles } from '@dmp/rules';
import type { RocketMqMessage } from '@dmp/messaging';
import { MetricsRegistry } from '@dmp/observability';
import {
  readMinuteAggregates,
  recomputedFromRaw,
  REPO_ROOT,
  stack,
  waitFor,
  type MinuteAggregate,
  expectedAggregates,
} from '@dmp/testing';
import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { existsSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { isDeepStrictEqual, promisify } from 'node:util';
import { MinuteAggregator } from '../apps/dmp-data/src/aggregation/aggregation.service';
import { EVERY_DEVICE } from '../apps/dmp-data/src/aggregation/minute-aggregation';
import { AlarmWriter } from '../apps/dmp-data/src/alarms/alarm.writer';
import {
  toCleaningDeadLetter,
  toCleaningDeadLetterBatch,
  type CleaningDeadLetter,
} from '../apps/dmp-data/src/cleaning/cleaning-dead-letter';
import { loadDataConfig } from '../apps/dmp-data/src/config';
import { toDeadLetterRows } from '../apps/dmp-data/src/dead-letters/dead-letter-row';
import { CommandWriter } from '../apps/dmp-data/src/commands/command.writer';
import { DeadLetterWriter } from '../apps/dmp-data/src/dead-letters/dead-letter.writer';
import { TelemetryBatchWriter } from '../apps/dmp-data/src/storage/telemetry-batch-writer';
import { deadLetterQuery } from '../tools/cli/src/commands/dead-letters';
import { applyReprocess } from '../tools/cli/src/commands/reprocess';
import { backtest } from '../tools/cli/src/commands/rules';
import {
  analystsAlarmEvents,
  analystsCommandEvents,
  analystsDataSet,
  docsBlockNeeds,
  docsSql,
  HISTORY_START,
  RECENT_START,
} from './support/analysts-data';

const exec = promisify(execFile);

interface Engine {
  url: string;
  stop(): Promise<void>;
}

interface LatestValue {
  device_id: string;
  metric: string;
  value: number;
  text_value: string;
}

/** What telemetry_latest should hold: the newest value of every metric by device time. */
function expectedLatest(stored: Iterable<NormalizedTelemetry>): LatestValue[] {
  const newest = new Map<string, LatestValue>();
  for (const m of [...stored].sort((a, b) => a.ts - b.ts))
    for (const [metric, v] of Object.entries(m.metrics))
      newest.set(`${m.deviceId} ${metric}`, {
        device_id: m.deviceId,
        metric,
        value: typeof v === 'string' ? 0 : Number(v),
        text_value: typeof v === 'string' ? v : '',
      });
  return [...newest.entries()].sort(([a], [b]) => (a < b ? -1 : 1)).map(([, v]) => v);
}

async function readLatest(repository: ClickHouseRepository): Promise<LatestValue[]> {
  const rows = await repository.query<LatestValue>(
    `SELECT device_id, metric, value, text_value FROM ${Tables.latest} FINAL ORDER BY device_id, metric`,
  );
  return rows.map((r) => ({ ...r, value: Number(r.value) }));
}

/** chdb behind tools/chdb/server.py, on a free port, with its data in a temporary folder. */
async function startCurrentEngine(): Promise<Engine> {
  if (!existsSync(join(REPO_ROOT, '.tools/chdb/.installed')))
    throw new Error('chdb-core is not installed in .tools/chdb: run scripts/bootstrap.sh');
  const dir = await mkdtemp(join(tmpdir(), 'dmp-chdb-'));
  const child = spawn('python3', [join(REPO_ROOT, 'tools/chdb/server.py'), dir], {
    stdio: ['pipe', 'pipe', 'inherit'],
  });
  const exited = once(child, 'exit');
  const line = await new Promise<string>((resolve, reject) => {
    createInterface({ input: child.stdout }).once('line', resolve);
    child.once('error', reject);
    child.once('exit', (code) => reject(new Error(`tools/chdb/server.py exited (${code}) before listening`)));
  });
  const { port } = JSON.parse(line) as { port: number };
  return {
    url: `http://127.0.0.1:${port}`,
    stop: async () => {
      child.stdin.end();
      await exited;
      await rm(dir, { recursive: true, force: true });
    },
  };
}

const engines: { name: string; start(): Promise<Engine> }[] = [
  { name: 'a current ClickHouse (chdb-core 26.x)', start: startCurrentEngine },
  {
    name: 'ClickHouse 18.16 (local stack)',
    start: () => Promise.resolve({ url: stack.clickhouse.url, stop: () => Promise.resolve() }),
  },
];

const dateTime64Text = (ms: number) => new Date(ms).toISOString().replace('T', ' ').replace('Z', '');

for (const engine of engines)
  describe(`DMP's ClickHouse statements on ${engine.name}`, () => {
    const database = `dmp_test_current_${randomBytes(4).toString('hex')}`;
    const config = loadDataConfig({
      DATA_AGGREGATION_LATENESS_MS: '0',
      DATA_AGGREGATION_MAX_KEYS: '7',
      DATA_BATCH_MAX_WAIT_MS: '50',
      DATA_CLEAN_MAX_AGE_MS: '0',
      DATA_CLEAN_METRIC_RANGES: '{"hum": [0, 100]}',
    });
    const stored = new Map<string, NormalizedTelemetry>();
    const letters: CleaningDeadLetter[] = [];
    let running: Engine;
    let url: string;
    let repository: ClickHouseRepository;
    let server: ServerVersion;
    let features: ReturnType<typeof serverFeatures>;
    let telemetry: TelemetryBatchWriter;

    before(async () => {
      running = await engine.start();
      url = running.url;
      // A short request timeout: the aggregator reads marks up to `now − timeout − 1 s`.
      repository = new ClickHouseRepository({ ...stack.clickhouse, url, database, requestTimeoutMs: 2_000 });
      telemetry = new TelemetryBatchWriter(
        repository,
        new MetricsRegistry('clickhouse-current-test'),
        config,
      );
    });

    after(async () => {
      await telemetry?.close();
      const admin = repository?.forDatabase('default');
      await admin?.command(`DROP DATABASE IF EXISTS ${database}`);
      await Promise.all([admin?.close(), repository?.close()]);
      await running?.stop();
    });

    it('creates the schema through the migrations, with the types the server has', async () => {
      const first = await applyMigrations(repository, migrations);
      server = await repository.serverVersion();
      features = serverFeatures(server);
      assert.equal(first.server, server.raw);
      if (engine.start === startCurrentEngine) assert.ok(server.major >= 26, `chdb reports ${server.raw}`);
      const labels = migrations.map((m) => `${String(m.version).padStart(3, '0')}_${m.name}`);
      const waiting = migrations.filter((m) => m.requires && !features[m.requires]);
      assert.deepEqual(
        first.waiting,
        labels.filter((_, i) => waiting.includes(migrations[i])),
      );
      assert.deepEqual([...first.applied, ...first.waiting].sort(), labels);
      const second = await applyMigrations(repository, migrations);
      assert.deepEqual(second.applied, []);
      assert.equal(second.alreadyApplied, first.applied.length);

      const type = async (table: string, column: string) =>
        (
          await repository.query<{ type: string }>(
            `SELECT type FROM system.columns WHERE database = '${database}' AND table = '${table}' AND name = '${column}'`,
          )
        )[0]?.type;
      assert.equal(
        await type(Tables.latest, 'metric'),
        features.lowCardinality ? 'LowCardinality(String)' : 'String',
      );
      assert.equal(
        await type(Tables.raw, 'metric_names'),
        features.lowCardinality ? 'Array(LowCardinality(String))' : 'Array(String)',
      );
      assert.equal(await type(Tables.raw, 'ts64'), features.dateTime64 ? "DateTime64(3, 'UTC')" : undefined);
    });

    it('parses the cluster form of every migration statement and has the cluster insert settings (CLICKHOUSE_CLUSTER)', async () => {
      // A cluster runs them for real in clickhouse-cluster.e2e-spec (18.16); here the current parser
      // reads every one (formatQuery, 23.10+), and the settings DMP sends on a cluster exist.
      const settings = (
        await repository.query<{ name: string }>(
          `SELECT name FROM system.settings WHERE name IN ('insert_distributed_sync', 'distributed_foreground_insert', 'insert_quorum', 'insert_quorum_timeout') ORDER BY name`,
        )
      ).map((r) => r.name);
      const syncInsert = server.major >= 24 ? 'distributed_foreground_insert' : 'insert_distributed_sync';
      for (const name of [syncInsert, 'insert_quorum', 'insert_quorum_timeout'])
        assert.ok(settings.includes(name), `${server.raw} has no setting ${name}`);
      if (server.major < 24) return;
      const layout = { database, cluster: 'dmp' };
      const statements = [
        SCHEMA_MIGRATIONS,
        ...migrations.flatMap((m) => m.statements({ database, server })),
      ].flatMap((statement) => clusterStatements(statement, layout));
      assert.ok(statements.length > migrations.length);
      for (const sql of statements) {
        const [parsed] = await repository
          .query<{ q: string }>(`SELECT formatQuery(${stringLiteral(sql)}) AS q`)
          .catch((error: unknown) => {
            throw new Error(`${server.raw} cannot parse:\n${sql}\n${String(error)}`);
          });
        assert.ok(parsed.q.length > 0);
      }
    });

    it('stores telemetry, alarms and dead letters as dmp-data does; FINAL collapses what was redelivered', async () => {
      const now = Date.now();
      for (const e of analystsDataSet()) {
        const result = cleanTelemetry(e, config.cleaning, now);
        if (result.kind === 'accepted') stored.set(result.telemetry.messageId, result.telemetry);
        if (result.kind === 'rejected' || result.removed.length > 0)
          letters.push(
            toCleaningDeadLetter(
              result,
              e,
              { topic: 'dmp_telemetry', messageId: `rmq-${e.messageId}` },
              'dmp_data',
              now,
            ),
          );
      }
      assert.equal(letters.length, 4);
      await Promise.all([...stored.values()].map((m) => telemetry.store(toTelemetryRows(m))));
      // Redelivered: the first five messages of each device, in batches of their own.
      const again = [...stored.values()].filter((m) => /-000[0-4]$/.test(m.messageId));
      await Promise.all(again.map((m) => telemetry.store(toTelemetryRows(m))));

      const [raw] = await repository.query<{ rows: number; ids: number }>(
        `SELECT count() AS rows, uniqExact(message_id) AS ids FROM ${Tables.raw} FINAL`,
      );
      assert.deepEqual([Number(raw.rows), Number(raw.ids)], [stored.size, stored.size]);

      // telemetry_latest: the newest value of every metric by device time, whatever the arrival order.
      assert.deepEqual(await readLatest(repository), expectedLatest(stored.values()));

      if (features.dateTime64) {
        const times = await repository.query<{ message_id: string; t: string; r: string }>(
          `SELECT message_id, toString(ts64) AS t, toString(received_at64) AS r FROM ${Tables.raw} FINAL WHERE device_id = 'dev-002'`,
        );
        assert.ok(times.length > 0);
        for (const row of times) {
          const m = stored.get(row.message_id);
          assert.deepEqual([row.t, row.r], [dateTime64Text(m!.ts), dateTime64Text(m!.receivedAt)]);
        }
      }

      // Alarms: pending (v1), raised (v2), then v2 again.
      const alarms = new AlarmWriter(repository, config.alarms);
      const [base, raised] = analystsAlarmEvents();
      await Promise.all([alarms.store(base), alarms.store(raised)]);
      await alarms.store(raised);
      await alarms.close();
      assert.deepEqual(
        (
          await repository.query<{ state: string; version: number }>(
            'SELECT state, version FROM alarms FINAL',
          )
        ).map((r) => [r.state, Number(r.version)]),
        [['active', 2]],
      );
      const [events] = await repository.query<{ n: number }>('SELECT count() AS n FROM alarm_events FINAL');
      assert.equal(Number(events.n), 2);
      const [explained] = await repository.query<{ n: number }>(
        'SELECT count() AS n FROM alarm_explanations FINAL',
      );
      assert.equal(Number(explained.n), 2);

      // Commands: one replied, one expired with a late reply.
      const commands = new CommandWriter(repository, config.commands);
      await Promise.all(analystsCommandEvents().map((event) => commands.store(event)));
      await commands.close();
      assert.deepEqual(
        (
          await repository.query<{ command_id: string; state: string }>(
            'SELECT command_id, state FROM commands FINAL ORDER BY command_id',
          )
        ).map((r) => [r.command_id, r.state]),
        [
          ['cmd-1', 'replied'],
          ['cmd-2', 'expired'],
        ],
      );

      // Dead letters: cleaning's batch, as dmp-data's dead-letter consumer stores it — twice.
      const batch = toCleaningDeadLetterBatch('dmp_dead_letter', 'dmp_data', letters);
      const message: RocketMqMessage = {
        topic: batch.topic,
        messageId: `rmq-batch-${database}`,
        body: batch.body,
        keys: batch.keys ?? [],
        properties: batch.properties ?? {},
        deliveryAttempt: 1,
        bornTimestamp: new Date(now),
      };
      const deadLetters = new DeadLetterWriter(repository, config.deadLetters);
      for (let delivery = 0; delivery < 2; delivery++)
        await Promise.all(toDeadLetterRows(message, now).map((row) => deadLetters.store(row)));
      await deadLetters.close();
      const all = await repository.query<DeadLetterRecord>(
        deadLetterQuery({ limit: 100, oldestFirst: true }),
      );
      assert.deepEqual(
        all.map((r) => [r.device_id, r.error_code, Number(r.received_at_ms)]),
        letters
          .map((l) => [l.deviceId, l.code, Number(l.entry.properties.dmp_received_at)])
          .sort((a, b) => Number(a[2]) - Number(b[2])),
      );
      const notFinite = await repository.query<DeadLetterRecord>(
        deadLetterQuery({
          code: 'DMP_ERR_CLEAN_NOT_FINITE',
          device: 'dev-002',
          since: HISTORY_START,
          limit: 10,
        }),
      );
      assert.deepEqual(
        // The payload is the original message (±Infinity written 1e999, which JSON.parse reads back).
        notFinite.map((r) => (JSON.parse(r.payload_text) as { messageId: string }).messageId),
        ['dev-002-0032'],
      );
    });

    it('recomputes the per-minute aggregates: equal to the raw rows, recent and backfilled minutes, late data', async () => {
      const metrics = new MetricsRegistry('clickhouse-current-aggregator');
      const aggregator = new MinuteAggregator(repository, config, metrics);
      const read = () => readMinuteAggregates(repository, `${Tables.minute} FINAL`, '1 = 1');
      const converge = async (expected: MinuteAggregate[]) => {
        let got: MinuteAggregate[] = [];
        await waitFor(
          () => `telemetry_1m to equal the raw rows (${got.length} of ${expected.length} minutes)`,
          async () => {
            await aggregator.runOnce();
            got = await read();
            return isDeepStrictEqual(got, expected);
          },
          { timeoutMs: 60_000, intervalMs: 500 },
        );
      };
      const expected = expectedAggregates(stored.values());
      assert.ok(
        expected.some((a) => a.minute * 1000 < Date.now() - 3 * 86_400_000),
        'backfilled minutes',
      );
      assert.ok(
        expected.some((a) => a.minute * 1000 >= RECENT_START),
        'recent minutes',
      );
      await converge(expected);
      assert.deepEqual(await read(), expected);
      assert.deepEqual(await readMinuteAggregates(repository, recomputedFromRaw('1 = 1'), '1 = 1'), expected);
      // Both recomputation statements ran: from telemetry_1m_source (recent) and telemetry_raw (older).
      const runs = await metrics.registry.getSingleMetricAsString('dmp_data_aggregation_run_seconds');
      for (const source of ['recent', 'raw'])
        assert.match(runs, new RegExp(`_count\\{[^}]*source="${source}"[^}]*\\} [1-9]`), source);

      // A late message in a minute already computed: the minute is recomputed.
      const late: NormalizedTelemetry = {
        ...stored.get('dev-003-r000')!,
        messageId: 'dev-003-late',
        ts: RECENT_START + 59_999,
        metrics: { temp: 40 },
      };
      await telemetry.store(toTelemetryRows(late));
      stored.set(late.messageId, late);
      await converge(expectedAggregates(stored.values()));

      // A whole-minute mark (on-time data) recomputes every device of its minute: here a device whose raw
      // row has no mark of its own.
      const unmarked: NormalizedTelemetry = {
        ...stored.get('dev-003-r000')!,
        deviceId: 'dev-009',
        messageId: 'dev-009-whole',
        ts: RECENT_START + 30_000,
        metrics: { temp: 12 },
      };
      await repository.insertRows(Tables.raw, [toTelemetryRows(unmarked).raw]);
      await repository.insertRows(
        Tables.minuteMarks,
        [{ device_id: EVERY_DEVICE, minute: RECENT_START / 1000 }],
        { columns: ['device_id', 'minute'] },
      );
      stored.set(unmarked.messageId, unmarked);
      await converge(expectedAggregates(stored.values()));
    });

    it('back-tests a rule set against the history (dmp rules backtest)', async () => {
      const dir = await mkdtemp(join(tmpdir(), 'dmp-backtest-current-'));
      try {
        await writeFile(
          join(dir, 'hot.yaml'),
          'rules:\n  - id: hot\n    when: state.latest.temp > 25\n    clear: state.latest.temp < 22\n    actions: [{ alarm: { severity: minor } }]\n',
        );
        const history = [...stored.values()]
          .filter((m) => m.deviceId === 'dev-001' && m.ts >= RECENT_START)
          .sort((a, b) => a.ts - b.ts);
        const expected: [string, number][] = [];
        let open = false;
        for (const m of history) {
          const temp = Number(m.metrics.temp);
          if (!open && temp > 25) expected.push(['raised', m.ts]);
          else if (open && temp < 22) expected.push(['cleared', m.ts]);
          else continue;
          open = !open;
        }
        assert.ok(expected.length >= 2, 'the history raises and clears the rule');
        const report = await backtest({
          rules: dir,
          from: RECENT_START,
          to: RECENT_START + 5 * 60_000,
          device: ['dev-001'],
          clickhouseUrl: url,
          database,
        });
        assert.equal(report.messages, history.length);
        assert.deepEqual(
          report.transitions.map((t) => [t.transition, Date.parse(t.ts)]),
          expected,
        );
      } finally {
        await rm(dir, { recursive: true, force: true });
      }
    });

    it('applies, lists and reverts an alarm generation (dmp rules reprocess --apply)', async () => {
      const dir = await mkdtemp(join(tmpdir(), 'dmp-reprocess-current-'));
      try {
        await writeFile(
          join(dir, 'hot.yaml'),
          'rules:\n  - id: hot\n    when: state.latest.temp > 25\n    clear: state.latest.temp < 22\n    actions: [{ alarm: { severity: minor } }]\n',
        );
        const compiled = compileRuleSet(await readRuleFiles(dir));
        assert.ok(compiled.ok);
        const range = { fromMs: RECENT_START, toMs: RECENT_START + 5 * 60_000, deviceIds: ['dev-001'] };
        const input = {
          ruleSet: compiled.ruleSet,
          rulesJson: '{}',
          ...range,
          reason: 'test',
          requestedBy: 'test',
        };
        const report = await backtest({
          rules: dir,
          from: range.fromMs,
          to: range.toMs,
          device: range.deviceIds,
          clickhouseUrl: url,
          database,
        });
        const raised = report.transitions.filter((t) => t.transition === 'raised').length;
        const first = await applyReprocess(repository, input);
        assert.deepEqual([first.step, first.record.state, first.record.alarms], ['write', 'applied', raised]);
        const again = await applyReprocess(repository, input);
        assert.deepEqual(
          [again.step, again.record.generation_id],
          ['applied-before', first.record.generation_id],
        );
        assert.deepEqual(
          (await listGenerations(repository)).map((g) => g.generation_id),
          [first.record.generation_id],
        );
        const sources = async () =>
          (
            await repository.query<{ source: string }>(
              effectiveAlarmsSql({ from: range.fromMs, to: range.toMs, deviceIds: range.deviceIds }),
            )
          ).map((r) => r.source);
        assert.deepEqual(await sources(), Array<string>(raised).fill(first.record.generation_id));
        const reverted = await revertGeneration(repository, first.record.generation_id, 'test');
        assert.equal(reverted.record.state, 'reverted');
        assert.ok((await sources()).every((source) => source === 'live'));
        assert.equal((await applyReprocess(repository, input)).step, 'reapply');
        assert.deepEqual(await sources(), Array<string>(raised).fill(first.record.generation_id));
      } finally {
        await rm(dir, { recursive: true, force: true });
      }
    });

    it('runs every SQL example of docs/analysts.md (those for newer servers where the server has them)', async () => {
      const blocks = await docsSql();
      assert.ok(blocks.length >= 15, `${blocks.length} SQL blocks`);
      let ran = 0;
      for (const sql of blocks) {
        const needs = docsBlockNeeds(sql);
        if (
          needs &&
          (server.major < needs.major || (server.major === needs.major && server.minor < needs.minor))
        )
          continue;
        const rows = await repository.query<Record<string, unknown>>(sql).catch((error: unknown) => {
          throw new Error(`docs/analysts.md block failed on ${server.raw}:\n${sql}\n${String(error)}`);
        });
        assert.ok(rows.length > 0, `no rows from:\n${sql}`);
        ran++;
      }
      assert.ok(ran > 0);
    });

    it('corrects and deletes stored telemetry, recomputing aggregates and latest values (dmp telemetry)', async () => {
      // dmp-data's aggregator runs meanwhile: a correction returns once it recomputed the minutes.
      const aggregator = new MinuteAggregator(
        repository,
        config,
        new MetricsRegistry('clickhouse-current-fix'),
      );
      const aggregating = new AbortController();
      const loop = (async () => {
        while (!aggregating.signal.aborted) {
          await aggregator.runOnce();
          await sleep(200, undefined, { signal: aggregating.signal }).catch(() => undefined);
        }
      })();
      const check = async (what: string) => {
        // (dev-009's one row went straight to telemetry_raw: it has no latest values)
        assert.deepEqual(
          await readLatest(repository),
          expectedLatest([...stored.values()].filter((m) => m.deviceId !== 'dev-009')),
          `${what}: latest`,
        );
        assert.deepEqual(
          await readMinuteAggregates(repository, `${Tables.minute} FINAL`, '1 = 1'),
          expectedAggregates(stored.values()),
          `${what}: telemetry_1m`,
        );
        const [raw] = await repository.query<{ n: string }>(`SELECT count() AS n FROM ${Tables.raw} FINAL`);
        assert.equal(Number(raw.n), stored.size, `${what}: telemetry_raw`);
      };
      const request = (r: Partial<CorrectionRequest>): CorrectionRequest => ({
        action: 'offset',
        metric: 'temp',
        operand: 0,
        deviceIds: ['dev-002'],
        fromMs: RECENT_START,
        toMs: Date.now(),
        reason: 'test',
        requestedBy: 'clickhouse-current',
        ...r,
      });
      const ofDevice = (id: string, from: number) =>
        [...stored.values()].filter((m) => m.deviceId === id && m.ts >= from);
      try {
        // dev-002's recent temperatures read 10 °C low: +10 from its second recent reading on, its newest
        // (the latest value) included.
        const [, second] = ofDevice('dev-002', RECENT_START)
          .filter((m) => typeof m.metrics.temp === 'number')
          .sort((a, b) => a.ts - b.ts);
        const offset = request({ operand: 10, fromMs: second.ts });
        const first = await applyCorrection(repository, offset, { timeoutMs: 60_000 });
        const changed = ofDevice('dev-002', second.ts).filter((m) => typeof m.metrics.temp === 'number');
        for (const m of changed)
          stored.set(m.messageId, { ...m, metrics: { ...m.metrics, temp: Number(m.metrics.temp) + 10 } });
        assert.deepEqual(
          [first.ranNow, first.record.state, first.record.rows_affected],
          [true, 'done', changed.length],
        );
        await check('offset');
        // Asked again (an operator's retry): done before, not applied twice.
        const again = await applyCorrection(
          repository,
          { ...offset, reason: 'retry' },
          { timeoutMs: 60_000 },
        );
        assert.deepEqual([again.ranNow, again.record.correction_id], [false, first.record.correction_id]);
        await check('offset again');

        // dev-001's humidity removed from its recent messages (the messages and their other metrics stay).
        await applyCorrection(
          repository,
          request({ action: 'remove', metric: 'hum', deviceIds: ['dev-001'] }),
          {
            timeoutMs: 60_000,
          },
        );
        for (const m of ofDevice('dev-001', RECENT_START))
          stored.set(m.messageId, {
            ...m,
            metrics: Object.fromEntries(Object.entries(m.metrics).filter(([name]) => name !== 'hum')),
          });
        await check('remove');

        // dev-003's recent messages deleted, through the CLI: its latest values fall back to its history.
        const { stdout } = await exec(
          process.execPath,
          [
            join(REPO_ROOT, 'dist/tools/cli/src/main.js'),
            'telemetry',
            'delete',
            '--devices',
            'dev-003',
            '--from',
            new Date(RECENT_START).toISOString(),
            '--to',
            String(Date.now()),
            '--reason',
            'sensor replaced',
            '--json',
          ],
          { env: { ...process.env, CLICKHOUSE_URL: url, CLICKHOUSE_DATABASE: database } },
        );
        const deleted = JSON.parse(stdout) as { state: string; rows_affected: number; ranNow: boolean };
        const gone = ofDevice('dev-003', RECENT_START).filter((m) => m.ts < Date.now());
        for (const m of gone) stored.delete(m.messageId);
        assert.deepEqual([deleted.ranNow, deleted.state, deleted.rows_affected], [true, 'done', gone.length]);
        await check('delete');

        // Refused, and nothing recorded: a range that ends before it starts, a future end, no reason.
        for (const [bad, message] of [
          [request({ fromMs: RECENT_START, toMs: RECENT_START }), /from must be before to/],
          [request({ toMs: Date.now() + 60_000 }), /to is in the future/],
          [request({ reason: ' ' }), /say why/],
          [request({ action: 'delete' }), /none for delete/],
        ] as const)
          await assert.rejects(applyCorrection(repository, bad), message);
        assert.deepEqual(
          (await listCorrections(repository)).map((c) => [c.action, c.state]),
          [
            ['delete', 'done'],
            ['remove', 'done'],
            ['offset', 'done'],
          ],
        );
      } finally {
        aggregating.abort();
        await loop;
      }
    });

    it('keeps DATA_RETENTION_DAYS: table TTL where the server has it, partition drops on 18.16', async () => {
      const count = async (where: string) =>
        Number(
          (await repository.query<{ n: number }>(`SELECT count() AS n FROM ${Tables.raw} WHERE ${where}`))[0]
            .n,
        );
      const recent = await count(`ts >= now() - 86400`);
      assert.ok(recent > 0 && (await count(`ts < now() - 3 * 86400`)) > 0);
      const result = await applyRetention(repository, { table: Tables.raw, days: 3 });
      assert.equal(result.method, features.tableTtl ? 'ttl' : 'drop_partitions');
      if (features.tableTtl) {
        const [table] = await repository.query<{ q: string }>(
          `SELECT create_table_query AS q FROM system.tables WHERE database = '${database}' AND name = '${Tables.raw}'`,
        );
        assert.match(table.q, /TTL ts \+ toIntervalDay\(3\)/);
      } else
        assert.deepEqual(result.droppedPartitions, [
          new Date(HISTORY_START).toISOString().slice(0, 7).replace('-', ''),
        ]);
      await waitFor('the expired rows gone', async () => (await count(`ts < now() - 3 * 86400`)) === 0);
      assert.equal(await count(`ts >= now() - 86400`), recent);
    });
  });
