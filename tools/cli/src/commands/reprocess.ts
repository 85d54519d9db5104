import {
  dataFingerprint,
  effectiveAlarmsSql,
  generatedAlarmRows,
  generationId,
  listGenerations,
  parseReprocessRequest,
  planApply,
  readGeneration,
  recordGeneration,
  refuseCluster,
  revertGeneration,
  writeGeneratedAlarms,
  type AlarmRowAsRead,
  type ClickHouseRepository,
  type GenerationRecord,
} from '@dmp/clickhouse';
import { DmpError, HistoryErrorCode } from '@dmp/contracts';
import { compileRuleSet, readRuleFiles, type RuleSet } from '@dmp/rules';
import { Command, InvalidArgumentError } from 'commander';
import { userInfo } from 'node:os';
import { resolve } from 'node:path';
import { withClickHouse, withClickHouseOptions, type ClickHouseOptions } from './clickhouse';
import {
  backtest,
  backtestSql,
  booleanMetrics,
  collect,
  loadRuleSet,
  printBacktest,
  Replay,
  replayDevice,
  time,
} from './rules';

/**
 * `dmp rules reprocess | generations | revert | alarms`: a range of history re-run through a chosen rule set
 * version — a dry run (the back-test), or applied as a new alarm generation beside the live alarms,
 * reversible; see `@dmp/clickhouse`'s alarm-generations. Nothing is sent: the replay is the pure engine
 * (libs/rules), its actions are dropped, and this command has no broker, kernel or webhook client at all.
 */

export interface ReprocessOptions extends ClickHouseOptions {
  rules: string;
  version?: string;
  from: number;
  to: number;
  device?: string[];
  apply?: boolean;
  reason?: string;
  by?: string;
  json?: boolean;
}

export interface ReprocessResult {
  record: GenerationRecord;
  /** What this run did: wrote it, finished an interrupted one, applied a reverted one again, or nothing. */
  step: ReturnType<typeof planApply>;
}

/** The rules directory as the chosen version: refused when `--version` names another one. */
async function chosenRuleSet(dir: string, version?: string) {
  const files = await readRuleFiles(resolve(dir));
  const outcome = compileRuleSet(files);
  if (!outcome.ok) {
    const { errors } = await loadRuleSet(dir);
    throw new Error(`the rule set is invalid:\n${errors.join('\n')}`);
  }
  if (version !== undefined && outcome.ruleSet.version !== version)
    throw new DmpError(
      HistoryErrorCode.RulesetVersionUnknown,
      `${dir} holds rule set version ${outcome.ruleSet.version}, not ${version}: check out the files of ${version} (git) and pass that directory`,
    );
  const rulesJson = JSON.stringify(Object.fromEntries(files.map((f) => [f.path, f.text])));
  return { ruleSet: outcome.ruleSet, rulesJson };
}

/**
 * Applies a reprocessing as a generation, finishes one that was interrupted, applies a reverted one
 * again, or reports one applied before. Each device's alarms are written once its replay is done; the
 * record says `applied` only after every device's are.
 */
export async function applyReprocess(
  clickhouse: ClickHouseRepository,
  input: {
    ruleSet: RuleSet;
    rulesJson: string;
    deviceIds: string[];
    fromMs: number;
    toMs: number;
    reason: string;
    requestedBy: string;
  },
  options: { now?: () => number; log?: (line: string) => void } = {},
): Promise<ReprocessResult> {
  const now = options.now ?? Date.now;
  const log = options.log ?? (() => undefined);
  const request = parseReprocessRequest(
    {
      rulesetVersion: input.ruleSet.version,
      rulesJson: input.rulesJson,
      deviceIds: input.deviceIds,
      fromMs: input.fromMs,
      toMs: input.toMs,
      reason: input.reason,
      requestedBy: input.requestedBy,
    },
    now(),
  );
  refuseCluster(clickhouse, 'reprocessing and reverts');
  const range = {
    from: request.fromMs,
    to: request.toMs,
    ...(request.deviceIds.length ? { device: request.deviceIds } : {}),
  };
  const devices = request.deviceIds.length
    ? [...new Set(request.deviceIds)].sort()
    : (await clickhouse.query<{ device_id: string }>(backtestSql.devices(range))).map((r) => r.device_id);
  const { fingerprint } = await dataFingerprint(clickhouse, {
    fromMs: request.fromMs,
    toMs: request.toMs,
    deviceIds: devices,
  });
  const id = generationId(request, fingerprint);
  let record = await readGeneration(clickhouse, id);
  const step = planApply(record);
  if (step === 'applied-before') return { record: record!, step };
  if (!record) {
    record = {
      generation_id: id,
      version: now(),
      state: 'requested',
      ruleset_version: request.rulesetVersion,
      rules_json: request.rulesJson,
      device_ids: devices,
      from_ms: request.fromMs,
      to_ms: request.toMs,
      data_fingerprint: fingerprint,
      reason: request.reason,
      requested_by: request.requestedBy,
      requested_at_ms: now(),
      applied_at_ms: 0,
      reverted_at_ms: 0,
      reverted_by: '',
      messages: 0,
      alarms: 0,
    };
    await recordGeneration(clickhouse, record);
  }
  log(
    `${id}: ${step === 'write' ? 'writing' : step === 'resume' ? 'finishing' : 'applying again'} ${devices.length} device(s)`,
  );

  // The same replay as the back-test, device by device; the rows depend on the data and the rule set only.
  const replay = new Replay(input.ruleSet, id);
  const booleans = await booleanMetrics(clickhouse, { ...range, device: devices });
  let messages = 0;
  let alarms = 0;
  for (const deviceId of devices) {
    const replayed = await replayDevice(clickhouse, replay, booleans, range, deviceId);
    const rows = generatedAlarmRows(
      id,
      replayed.transitions.flatMap((t) => (t.event ? [t.event] : [])),
    );
    await writeGeneratedAlarms(clickhouse, rows);
    messages += replayed.messages;
    alarms += rows.length;
  }
  const at = now();
  record = {
    ...record,
    state: 'applied',
    version: Math.max(at, record.version + 1),
    applied_at_ms: at,
    reverted_at_ms: 0,
    reverted_by: '',
    messages,
    alarms,
  };
  await recordGeneration(clickhouse, record);
  return { record, step };
}

/** A row of the analysts' query (`effectiveAlarmsSql`). */
type EffectiveAlarm = Pick<
  AlarmRowAsRead,
  'alarm_id' | 'device_id' | 'rule_id' | 'severity' | 'state' | 'message' | 'started_at_ms'
> & { source: string };

const at = (ms: number) => (ms > 0 ? new Date(ms).toISOString() : '-');

export function formatGeneration(r: GenerationRecord): string {
  return [
    `${r.generation_id}  ${r.state}  rule set ${r.ruleset_version}`,
    `  ${r.device_ids.length} device(s); device time ${at(r.from_ms)} to ${at(r.to_ms)}`,
    `  requested ${at(r.requested_at_ms)} by ${r.requested_by}: ${r.reason}`,
    `  ${r.messages} message(s) replayed, ${r.alarms} alarm(s); applied ${at(r.applied_at_ms)}` +
      (r.state === 'reverted' ? `; reverted ${at(r.reverted_at_ms)} by ${r.reverted_by}` : ''),
  ].join('\n');
}

async function reprocess(options: ReprocessOptions): Promise<void> {
  if (options.to <= options.from)
    throw new DmpError(HistoryErrorCode.ReprocessInvalid, '--to must be after --from');
  const { ruleSet, rulesJson } = await chosenRuleSet(options.rules, options.version);
  if (!options.apply) {
    const report = await backtest({ ...options, rules: options.rules });
    if (options.json) console.log(JSON.stringify({ dryRun: true, ...report }, null, 2));
    else {
      printBacktest(report);
      console.log('\ndry run: nothing written; --apply writes these alarms as a generation');
    }
    return;
  }
  const result = await withClickHouse(options, (clickhouse) =>
    applyReprocess(
      clickhouse,
      {
        ruleSet,
        rulesJson,
        deviceIds: options.device ?? [],
        fromMs: options.from,
        toMs: options.to,
        reason: options.reason ?? '',
        requestedBy: options.by ?? userInfo().username,
      },
      { log: options.json ? undefined : (line) => console.error(line) },
    ),
  );
  if (options.json) console.log(JSON.stringify({ step: result.step, ...result.record }, null, 2));
  else
    console.log(
      `${result.step === 'applied-before' ? 'applied before, nothing written again:\n' : ''}${formatGeneration(result.record)}`,
    );
}

const positive = (value: string): number => {
  const n = Number(value);
  if (!Number.isInteger(n) || n <= 0) throw new InvalidArgumentError('a positive integer');
  return n;
};

export function registerReprocessCommands(rules: Command): void {
  withClickHouseOptions(
    rules
      .command('reprocess')
      .description(
        'run a range of history through a rule set version: a dry run (the back-test), or --apply: its alarms as a new, reversible generation; nothing is sent',
      )
      .option('--rules <dir>', 'rules directory: the chosen version', 'rules')
      .option('--version <version>', 'the rule set version the directory must hold (refused otherwise)')
      .requiredOption('--from <time>', 'device time from (inclusive): ISO 8601 or epoch ms', time)
      .requiredOption('--to <time>', 'device time to (exclusive), in the past', time)
      .option('--device <id>', 'only this device (repeatable; default: every device with data)', collect)
      .option('--apply', 'write the alarms as a generation (default: dry run)')
      .option('--reason <text>', 'why (recorded with the generation; needed with --apply)')
      .option('--by <name>', 'who asks (recorded; default: the user running it)')
      .option('--json', 'machine-readable output'),
  ).action((options: ReprocessOptions) => reprocess(options));

  withClickHouseOptions(
    rules
      .command('alarms')
      .description(
        "a range's alarms as analysts read them: the newest applied generation's where one covers the device, else the live ones",
      )
      .requiredOption('--from <time>', 'alarms started from (inclusive): ISO 8601 or epoch ms', time)
      .requiredOption('--to <time>', 'alarms started before (exclusive)', time)
      .option('--device <id>', 'only this device (repeatable)', collect)
      .option('--json', 'machine-readable output'),
  ).action(
    async (options: ClickHouseOptions & { from: number; to: number; device?: string[]; json?: boolean }) => {
      const rows = await withClickHouse(options, (clickhouse) =>
        clickhouse.query<EffectiveAlarm>(
          effectiveAlarmsSql({ from: options.from, to: options.to, deviceIds: options.device ?? [] }),
        ),
      );
      if (options.json) console.log(JSON.stringify(rows, null, 2));
      else if (rows.length === 0) console.log('no alarms');
      else
        for (const r of rows)
          console.log(
            `${at(Number(r.started_at_ms))}  ${r.state.padEnd(9)} ${r.rule_id.padEnd(24)} ${r.device_id}  [${r.severity}] ${r.message}  (${r.source})`,
          );
    },
  );

  withClickHouseOptions(
    rules
      .command('generations')
      .description('the alarm generations recorded, newest first')
      .option('--limit <n>', 'at most n', positive, 50)
      .option('--json', 'machine-readable output'),
  ).action(async (options: ClickHouseOptions & { limit: number; json?: boolean }) => {
    const records = await withClickHouse(options, (clickhouse) => listGenerations(clickhouse, options.limit));
    if (options.json) console.log(JSON.stringify(records, null, 2));
    else console.log(records.length === 0 ? 'no generations' : records.map(formatGeneration).join('\n\n'));
  });

  withClickHouseOptions(
    rules
      .command('revert <generation>')
      .description(
        'revert an applied generation: the live alarms count again for its range (recorded; its rows stay)',
      )
      .option('--by <name>', 'who asks (recorded; default: the user running it)')
      .option('--json', 'machine-readable output'),
  ).action(async (id: string, options: ClickHouseOptions & { by?: string; json?: boolean }) => {
    const { record, changed } = await withClickHouse(options, (clickhouse) =>
      revertGeneration(clickhouse, id, options.by ?? userInfo().username),
    );
    if (options.json) console.log(JSON.stringify({ changed, ...record }, null, 2));
    else console.log(`${changed ? '' : 'reverted before, nothing changed:\n'}${formatGeneration(record)}`);
  });
}
