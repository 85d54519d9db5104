import { ClickHouseRepository, stringLiteral } from '@dmp/clickhouse';
import { clickhouseSection, loadConfig } from '@dmp/config';
import {
  normalizedTelemetrySchema,
  telemetryKinds,
  type DeviceMetadata,
  type MetricValue,
  type NormalizedTelemetry,
} from '@dmp/contracts';
import {
  compileRuleSet,
  emptyState,
  evaluateMessage,
  formatRuleError,
  normalizeTelemetry,
  raiseIfDue,
  readRuleFiles,
  type Activation,
  type DeviceState,
  type PlannedAction,
  type RuleDevice,
  type RuleSet,
  type Transition,
} from '@dmp/rules';
import { Command, InvalidArgumentError } from 'commander';
import { readFile } from 'node:fs/promises';
import { join, relative, resolve } from 'node:path';
import { z } from 'zod';
import { registerReprocessCommands } from './reprocess';

/**
 * `dmp rules validate | dry-run | backtest | push` — the rule author's tools, on the same engine the kernel
 * runs (apps/dmp-kernel/src/rules/engine): what passes `validate` loads in the kernel, what `dry-run`
 * prints is what the kernel would do, and `backtest` replays stored history through it.
 */

/** A directory as the user knows it: relative to the working directory when inside it. */
function displayDir(absolute: string): string {
  const rel = relative(process.cwd(), absolute);
  return rel.startsWith('..') ? absolute : rel || '.';
}

// ---------------------------------------------------------------------------------------------
// validate
// ---------------------------------------------------------------------------------------------

/** Compiles a rules directory; errors are printed as `path/file:line:col: message` (paths relative to cwd). */
export async function loadRuleSet(dir: string): Promise<{ ruleSet?: RuleSet; errors: string[] }> {
  const root = resolve(dir);
  const files = await readRuleFiles(root);
  const outcome = compileRuleSet(files);
  if (outcome.ok) return { ruleSet: outcome.ruleSet, errors: [] };
  return {
    errors: outcome.errors.map((e) => formatRuleError({ ...e, file: join(displayDir(root), e.file) })),
  };
}

async function validate(dir: string): Promise<void> {
  const { ruleSet, errors } = await loadRuleSet(dir);
  if (!ruleSet) {
    for (const line of errors) console.error(line);
    console.error(`${errors.length} error(s): the rule set would be refused`);
    process.exitCode = 1;
    return;
  }
  console.log(
    `ok: ${ruleSet.rules.length} rule(s), ${ruleSet.products.byId.size} product model(s), version ${ruleSet.version}`,
  );
}

// ---------------------------------------------------------------------------------------------
// dry-run
// ---------------------------------------------------------------------------------------------

/** A sample: a device message, optionally with the device's metadata (as the registry would give it). */
const sampleSchema = z.object({
  deviceId: z.string().min(1),
  messageId: z.string().min(1).optional(),
  kind: z.enum(telemetryKinds).default('telemetry'),
  ts: z.number().int().positive().optional(),
  seq: z.number().int().nonnegative().optional(),
  metrics: z.record(z.string(), z.union([z.number(), z.boolean(), z.string()])),
  tenantId: z.string().default(''),
  productId: z.string().default(''),
  siteId: z.string().default(''),
  tags: z.record(z.string(), z.string()).default({}),
});

/** In-memory state of a replay: per device, its recent values and condition states. */
export class Replay {
  private readonly states = new Map<string, DeviceState>();
  private readonly activations = new Map<string, Map<string, Activation>>();
  private ids = 0;

  constructor(
    readonly ruleSet: RuleSet,
    private readonly idPrefix: string,
  ) {}

  evaluate(message: NormalizedTelemetry, device: RuleDevice) {
    const state = this.states.get(device.deviceId) ?? emptyState();
    const activations = this.activationsOf(device.deviceId);
    const result = evaluateMessage(this.ruleSet, message, device, state, activations, {
      now: message.ts,
      newId: () => `${this.idPrefix}-${++this.ids}`,
    });
    this.apply(device.deviceId, result.transitions);
    this.states.set(device.deviceId, result.state);
    return result;
  }

  /** The timer at the end of a device's history: pending conditions whose duration elapsed by `until`. */
  finish(device: RuleDevice, until: number): { transitions: Transition[]; actions: PlannedAction[] } {
    const transitions: Transition[] = [];
    const actions: PlannedAction[] = [];
    const state = this.states.get(device.deviceId) ?? emptyState();
    for (const activation of this.activationsOf(device.deviceId).values()) {
      const rule = this.ruleSet.rules.find((r) => r.id === activation.ruleId);
      const due = rule && raiseIfDue(this.ruleSet, rule, activation, device, state, { atMessageTime: until });
      if (!due) continue;
      transitions.push(due.transition);
      actions.push(...due.actions);
    }
    this.apply(device.deviceId, transitions);
    return { transitions, actions };
  }

  open(deviceId: string): Activation[] {
    return [...this.activationsOf(deviceId).values()];
  }

  private activationsOf(deviceId: string): Map<string, Activation> {
    let map = this.activations.get(deviceId);
    if (!map) {
      map = new Map();
      this.activations.set(deviceId, map);
    }
    return map;
  }

  private apply(deviceId: string, transitions: readonly Transition[]): void {
    const map = this.activationsOf(deviceId);
    for (const t of transitions)
      if (t.after) map.set(t.ruleId, t.after);
      else map.delete(t.ruleId);
  }
}

const describeAction = (a: PlannedAction): string => {
  switch (a.kind) {
    case 'command':
      return `command ${a.name} ${JSON.stringify(a.params)} → devices/${a.deviceId}/command`;
    case 'webhook':
      return `webhook POST ${a.url} (${a.payload.event})`;
    case 'route':
      return `route → ${a.topic}`;
  }
};

const describeTransition = (t: Transition): string =>
  `${t.transition}${t.event ? ` alarm ${t.event.alarmId} [${t.event.severity}] "${t.event.message}"` : ''}`;

interface DryRunOptions {
  rules: string;
  messages: string;
  normalized?: boolean;
  json?: boolean;
}

async function dryRun(options: DryRunOptions): Promise<void> {
  const { ruleSet, errors } = await loadRuleSet(options.rules);
  if (!ruleSet) {
    for (const line of errors) console.error(line);
    process.exitCode = 1;
    return;
  }
  const lines = (await readFile(options.messages, 'utf8')).split('\n');
  const replay = new Replay(ruleSet, 'dry');
  const output: unknown[] = [];
  let ts = Date.now();
  for (const [index, line] of lines.entries()) {
    if (!line.trim() || line.trimStart().startsWith('#')) continue;
    const where = `${options.messages}:${index + 1}`;
    let sample: z.output<typeof sampleSchema>;
    try {
      const parsed = sampleSchema.safeParse(JSON.parse(line));
      if (!parsed.success)
        throw new Error(parsed.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; '));
      sample = parsed.data;
    } catch (error) {
      console.error(`${where}: not a sample message: ${(error as Error).message}`);
      process.exitCode = 1;
      continue;
    }
    ts = sample.ts ?? ts + 1_000;
    const metadata: DeviceMetadata = {
      tenantId: sample.tenantId,
      productId: sample.productId,
      siteId: sample.siteId,
      tags: sample.tags,
    };
    const envelope = {
      deviceId: sample.deviceId,
      messageId: sample.messageId ?? `dry-${index + 1}`,
      kind: sample.kind,
      ts,
      ...(sample.seq !== undefined ? { seq: sample.seq } : {}),
      metrics: sample.metrics,
      receivedAt: ts,
    };
    const telemetry = options.normalized
      ? { ...envelope, ...metadata }
      : normalizeTelemetry(envelope, metadata, ruleSet.products).telemetry;
    const device: RuleDevice = { deviceId: sample.deviceId, ...metadata };
    const result = replay.evaluate(normalizedTelemetrySchema.parse(telemetry), device);
    if (options.json) {
      output.push({
        line: index + 1,
        message: telemetry,
        results: result.results,
        transitions: result.transitions.map((t) => ({
          ruleId: t.ruleId,
          transition: t.transition,
          ts: t.ts,
          event: t.event,
        })),
        actions: result.actions,
      });
      continue;
    }
    const matched = result.results.filter((r) => r.result === 'match').map((r) => r.ruleId);
    console.log(
      `${where} ${telemetry.deviceId} ${telemetry.kind} ${new Date(ts).toISOString()} ${JSON.stringify(telemetry.metrics)}`,
    );
    console.log(`  matched: ${matched.length ? matched.join(', ') : '(none)'}`);
    for (const r of result.results.filter((r) => r.result === 'error'))
      console.log(`  error in ${r.ruleId}: ${r.code}: ${r.error}`);
    for (const t of result.transitions) console.log(`  ${t.ruleId}: ${describeTransition(t)}`);
    for (const a of result.actions) console.log(`  ${a.ruleId} (${a.trigger}): would ${describeAction(a)}`);
  }
  if (options.json) console.log(JSON.stringify(output, null, 2));
}

// ---------------------------------------------------------------------------------------------
// backtest
// ---------------------------------------------------------------------------------------------

/** What a back-test reads: devices and the range of device time `[from, to)`, epoch milliseconds. */
export interface BacktestRange {
  from: number;
  to: number;
  device?: readonly string[];
}

const rangeSql = ({ from, to }: BacktestRange) =>
  `ts_ms >= ${Math.floor(from)} AND ts_ms < ${Math.floor(to)}`;
const deviceSql = ({ device }: BacktestRange) =>
  device?.length ? ` AND device_id IN (${device.map(stringLiteral).join(', ')})` : '';

/**
 * The statements of a back-test (ClickHouse 18.16: values quoted, no query parameters): the devices
 * with data in the range, the metrics `telemetry_latest` knows as booleans, one device's messages.
 */
export const backtestSql = {
  devices: (range: BacktestRange) =>
    `SELECT device_id FROM telemetry_raw WHERE ${rangeSql(range)}${deviceSql(range)} GROUP BY device_id ORDER BY device_id`,
  booleans: (range: BacktestRange) =>
    `SELECT device_id, metric FROM telemetry_latest FINAL WHERE value_type = 'bool'${deviceSql(range)}`,
  messages: (range: BacktestRange, deviceId: string) =>
    `SELECT device_id, message_id, kind, ts_ms, seq, tenant_id, product_id, site_id, metric_names, metric_values,
       text_names, text_values, received_at_ms
FROM telemetry_raw FINAL
WHERE device_id = ${stringLiteral(deviceId)} AND ${rangeSql(range)}
ORDER BY ts_ms, message_id`,
};

interface BacktestOptions {
  rules: string;
  from: number;
  to: number;
  device?: string[];
  clickhouseUrl?: string;
  database?: string;
  all?: boolean;
  json?: boolean;
}

interface RawRow {
  device_id: string;
  message_id: string;
  kind: NormalizedTelemetry['kind'];
  ts_ms: string | number;
  seq: string | number | null;
  tenant_id: string;
  product_id: string;
  site_id: string;
  metric_names: string[];
  metric_values: number[];
  text_names: string[];
  text_values: string[];
  received_at_ms: string | number;
}

export interface BacktestReport {
  rulesetVersion: string;
  from: string;
  to: string;
  devices: number;
  messages: number;
  transitions: {
    ts: string;
    deviceId: string;
    ruleId: string;
    transition: string;
    alarmId?: string;
    severity?: string;
    message?: string;
  }[];
  summary: Record<string, { raised: number; cleared: number; openAtEnd: number }>;
}

/** The (device, metric)s that `telemetry_latest` knows as booleans (stored as 0/1 in raw). */
export async function booleanMetrics(
  clickhouse: ClickHouseRepository,
  range: BacktestRange,
): Promise<Set<string>> {
  return new Set(
    (await clickhouse.query<{ device_id: string; metric: string }>(backtestSql.booleans(range))).map(
      (r) => `${r.device_id}\u0000${r.metric}`,
    ),
  );
}

/**
 * Replays one device's stored messages of the range (FINAL: deduplicated) through `replay`, in time
 * order, then its timer at the end of the range: every transition, in order.
 */
export async function replayDevice(
  clickhouse: ClickHouseRepository,
  replay: Replay,
  booleans: ReadonlySet<string>,
  range: BacktestRange,
  deviceId: string,
): Promise<{ messages: number; transitions: Transition[] }> {
  const rows = await clickhouse.query<RawRow>(backtestSql.messages(range, deviceId));
  const transitions: Transition[] = [];
  let device: RuleDevice = { deviceId, tenantId: '', productId: '', siteId: '', tags: {} };
  for (const row of rows) {
    const metrics: Record<string, MetricValue> = {};
    row.metric_names.forEach((name, i) => {
      const value = Number(row.metric_values[i]);
      metrics[name] = booleans.has(`${deviceId}\u0000${name}`) ? value !== 0 : value;
    });
    row.text_names.forEach((name, i) => (metrics[name] = row.text_values[i]));
    device = { deviceId, tenantId: row.tenant_id, productId: row.product_id, siteId: row.site_id, tags: {} };
    const message: NormalizedTelemetry = {
      deviceId,
      messageId: row.message_id,
      kind: row.kind,
      ts: Number(row.ts_ms),
      ...(row.seq !== null && row.seq !== undefined ? { seq: Number(row.seq) } : {}),
      metrics,
      receivedAt: Number(row.received_at_ms),
      tenantId: row.tenant_id,
      productId: row.product_id,
      siteId: row.site_id,
    };
    transitions.push(...replay.evaluate(message, device).transitions);
  }
  transitions.push(...replay.finish(device, range.to).transitions);
  return { messages: rows.length, transitions };
}

/**
 * Replays `telemetry_raw` (deduplicated: FINAL) between two times through the rules, each device's
 * messages in time order, everything in memory, and reports the conditions that would have been raised
 * and cleared. Booleans are stored as 0/1 in ClickHouse: metrics that `telemetry_latest` knows as
 * booleans are turned back into booleans. Device tags are not stored with telemetry: `device.tags` is empty.
 */
export async function backtest(options: BacktestOptions): Promise<BacktestReport> {
  const { ruleSet, errors } = await loadRuleSet(options.rules);
  if (!ruleSet) throw new Error(`the rule set is invalid:\n${errors.join('\n')}`);
  const env = loadConfig({ clickhouse: clickhouseSection }).clickhouse;
  const clickhouse = new ClickHouseRepository({
    ...env,
    ...(options.clickhouseUrl ? { url: options.clickhouseUrl } : {}),
    ...(options.database ? { database: options.database } : {}),
  });
  const replay = new Replay(ruleSet, 'backtest');
  const report: BacktestReport = {
    rulesetVersion: ruleSet.version,
    from: new Date(options.from).toISOString(),
    to: new Date(options.to).toISOString(),
    devices: 0,
    messages: 0,
    transitions: [],
    summary: Object.fromEntries(ruleSet.rules.map((r) => [r.id, { raised: 0, cleared: 0, openAtEnd: 0 }])),
  };
  const record = (transitions: readonly Transition[]) => {
    for (const t of transitions) {
      if (t.transition === 'raised') report.summary[t.ruleId].raised += 1;
      if (t.transition === 'cleared' && report.summary[t.ruleId]) report.summary[t.ruleId].cleared += 1;
      if (!options.all && (t.transition === 'pending' || t.transition === 'cancelled')) continue;
      report.transitions.push({
        ts: new Date(t.ts).toISOString(),
        deviceId: t.deviceId,
        ruleId: t.ruleId,
        transition: t.transition,
        ...(t.event
          ? { alarmId: t.event.alarmId, severity: t.event.severity, message: t.event.message }
          : {}),
      });
    }
  };
  try {
    const devices = (await clickhouse.query<{ device_id: string }>(backtestSql.devices(options))).map(
      (r) => r.device_id,
    );
    const booleans = await booleanMetrics(clickhouse, options);
    for (const deviceId of devices) {
      report.devices += 1;
      const replayed = await replayDevice(clickhouse, replay, booleans, options, deviceId);
      report.messages += replayed.messages;
      record(replayed.transitions);
      for (const open of replay.open(deviceId))
        if (open.state !== 'pending' && report.summary[open.ruleId])
          report.summary[open.ruleId].openAtEnd += 1;
    }
  } finally {
    await clickhouse.close();
  }
  return report;
}

export function printBacktest(report: BacktestReport): void {
  console.log(
    `back-test of rule set ${report.rulesetVersion} on ${report.from} … ${report.to}: ${report.messages} message(s) of ${report.devices} device(s)`,
  );
  for (const t of report.transitions)
    console.log(
      `${t.ts}  ${t.transition.padEnd(9)} ${t.ruleId.padEnd(24)} ${t.deviceId}${t.alarmId ? `  [${t.severity}] ${t.message}` : ''}`,
    );
  console.log('\nrule                      raised  cleared  open at end');
  for (const [ruleId, s] of Object.entries(report.summary))
    console.log(
      `${ruleId.padEnd(25)} ${String(s.raised).padStart(6)} ${String(s.cleared).padStart(8)} ${String(s.openAtEnd).padStart(12)}`,
    );
}

// ---------------------------------------------------------------------------------------------
// push (admin API)
// ---------------------------------------------------------------------------------------------

const apiSection = z
  .object({
    DMP_KERNEL_URL: z.url().default('http://127.0.0.1:3002'),
    ADMIN_TOKEN: z.string().optional(),
  })
  .transform((e) => ({ url: e.DMP_KERNEL_URL, token: e.ADMIN_TOKEN }));

async function push(dir: string, options: { url?: string; token?: string }): Promise<void> {
  const env = loadConfig({ api: apiSection }).api;
  const token = options.token ?? env.token;
  if (!token) throw new Error('the admin token is needed: set ADMIN_TOKEN or pass --token');
  const files = await readRuleFiles(resolve(dir));
  const response = await fetch(`${(options.url ?? env.url).replace(/\/+$/, '')}/rules`, {
    method: 'PUT',
    headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
    body: JSON.stringify({ files }),
  });
  const body = (await response.json().catch(() => ({}))) as {
    text?: string[];
    version?: string;
    message?: string;
    rules?: number;
  };
  if (response.status === 422) {
    for (const line of body.text ?? []) console.error(join(displayDir(resolve(dir)), line));
    console.error('refused by dmp-kernel; the running rule set is unchanged');
    process.exitCode = 1;
    return;
  }
  if (!response.ok) throw new Error(`PUT /rules: ${response.status} ${body.message ?? ''}`);
  console.log(`dmp-kernel runs rule set ${body.version} (${body.rules} rules)`);
}

// ---------------------------------------------------------------------------------------------

export const time = (value: string): number => {
  const ms = /^\d+$/.test(value) ? Number(value) : Date.parse(value);
  if (!Number.isFinite(ms))
    throw new InvalidArgumentError('a time: ISO 8601 (2026-01-01T00:00:00Z) or epoch ms');
  return ms;
};
export const collect = (value: string, previous: string[] = []) => [...previous, value];

export function registerRulesCommand(program: Command): void {
  const rules = program
    .command('rules')
    .description("rule authors' tools: validate, dry-run, back-test, reprocess, push");

  rules
    .command('validate [dir]')
    .description('compile a rules directory; errors as file:line:col: message (exit code 1)')
    .action((dir: string | undefined) => validate(dir ?? 'rules'));

  rules
    .command('dry-run')
    .description(
      'evaluate sample messages (JSON lines) and print matches, transitions and actions — no side effects',
    )
    .option('--rules <dir>', 'rules directory', 'rules')
    .requiredOption(
      '--messages <file>',
      'JSON lines: {deviceId, kind, ts, metrics, productId?, tenantId?, siteId?, tags?}',
    )
    .option('--normalized', 'messages are already normalized (skip product models)')
    .option('--json', 'machine-readable output')
    .action((options: DryRunOptions) => dryRun(options));

  rules
    .command('backtest')
    .description(
      'replay stored telemetry (ClickHouse telemetry_raw) through the rules: which alarms would have fired',
    )
    .option('--rules <dir>', 'rules directory', 'rules')
    .requiredOption('--from <time>', 'start (ISO 8601 or epoch ms)', time)
    .requiredOption('--to <time>', 'end, exclusive (ISO 8601 or epoch ms)', time)
    .option('--device <id>', 'only this device (repeatable)', collect)
    .option('--clickhouse-url <url>', 'default CLICKHOUSE_URL')
    .option('--database <name>', 'default CLICKHOUSE_DATABASE')
    .option('--all', 'also list pending and cancelled conditions')
    .option('--json', 'machine-readable output')
    .action(async (options: BacktestOptions) => {
      if (options.to <= options.from) throw new InvalidArgumentError('--to must be after --from');
      const report = await backtest(options);
      if (options.json) console.log(JSON.stringify(report, null, 2));
      else printBacktest(report);
    });

  rules
    .command('push [dir]')
    .description(
      "replace dmp-kernel's running rule set through its admin API (validated there; 422 keeps the old one)",
    )
    .option('--url <url>', "dmp-kernel's base URL (default DMP_KERNEL_URL or http://127.0.0.1:3002)")
    .option('--token <token>', 'admin token (default ADMIN_TOKEN)')
    .action((dir: string | undefined, options: { url?: string; token?: string }) =>
      push(dir ?? 'rules', options),
    );

  registerReprocessCommands(rules);
}
