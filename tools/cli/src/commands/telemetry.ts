import {
  applyCorrection,
  correctionRequestSchema,
  listCorrections,
  type CorrectionAction,
  type CorrectionRecord,
} from '@dmp/clickhouse';
import { Command, InvalidArgumentError } from 'commander';
import { userInfo } from 'node:os';
import { withClickHouse, withClickHouseOptions, type ClickHouseOptions } from './clickhouse';

/**
 * `dmp telemetry correct | delete | corrections`: corrections of stored telemetry, straight in
 * ClickHouse (CLICKHOUSE_*), recorded in `telemetry_corrections` — see `@dmp/clickhouse`'s corrections.
 */

interface CorrectionOptions extends ClickHouseOptions {
  devices: string[];
  from: number;
  to: number;
  reason: string;
  by?: string;
  timeout: number;
  json?: boolean;
}

const time = (value: string): number => {
  const ms = /^\d+$/.test(value) ? Number(value) : Date.parse(value);
  if (!Number.isFinite(ms)) throw new InvalidArgumentError('an ISO 8601 time or epoch milliseconds');
  return ms;
};

const number = (value: string): number => {
  const n = Number(value);
  if (value.trim() === '' || !Number.isFinite(n)) throw new InvalidArgumentError('a finite number');
  return n;
};

const list = (value: string, before: string[] = []): string[] => [
  ...before,
  ...value
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean),
];

const at = (ms: number) => new Date(ms).toISOString();

export function formatCorrection(r: CorrectionRecord): string {
  const what =
    r.action === 'delete'
      ? 'delete messages'
      : `${r.action} ${r.metric}${r.action === 'remove' ? '' : ` ${r.operand}`}`;
  return [
    `${r.correction_id}  ${r.state}  ${what}`,
    `  devices ${r.device_ids.join(', ')}; device time ${at(r.from_ms)} to ${at(r.to_ms)}`,
    `  requested ${at(r.requested_at_ms)} by ${r.requested_by}: ${r.reason}`,
    `  ${r.rows_affected} message(s) changed; ${r.minutes_recomputed} minute(s) and ${r.latest_recomputed} latest value(s) recomputed`,
  ].join('\n');
}

async function run(action: CorrectionAction, metric: string, operand: number, options: CorrectionOptions) {
  const request = correctionRequestSchema.safeParse({
    action,
    metric,
    operand,
    deviceIds: options.devices,
    fromMs: options.from,
    toMs: options.to,
    reason: options.reason,
    requestedBy: options.by ?? userInfo().username,
  });
  if (!request.success)
    throw new Error(request.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; '));
  const { record, ranNow } = await withClickHouse(options, (clickhouse) =>
    applyCorrection(clickhouse, request.data, {
      timeoutMs: options.timeout,
      log: options.json ? undefined : (line) => console.error(line),
    }),
  );
  if (options.json) console.log(JSON.stringify({ ranNow, ...record }, null, 2));
  else console.log(`${ranNow ? '' : 'done before, nothing changed again:\n'}${formatCorrection(record)}`);
}

const correctionOptions = (command: Command): Command =>
  withClickHouseOptions(command)
    .requiredOption('--devices <ids>', 'device ids, comma-separated (repeatable)', list)
    .requiredOption('--from <time>', 'device time from (inclusive): ISO 8601 or epoch ms', time)
    .requiredOption('--to <time>', 'device time to (exclusive), in the past', time)
    .requiredOption('--reason <text>', 'why (recorded with the correction)')
    .option('--by <name>', 'who asks (recorded; default: the user running it)')
    .option('--timeout <ms>', 'wait this long for each step', number, 300_000)
    .option('--json', 'machine-readable output');

export function registerTelemetryCommand(program: Command): void {
  const telemetry = program
    .command('telemetry')
    .description(
      'correct or delete stored telemetry; the 1-minute aggregates and latest values are recomputed, and every correction is recorded',
    );

  correctionOptions(
    telemetry
      .command('correct <metric>')
      .description(
        "change a numeric metric's stored values in a range: --offset, --scale, --set, or --remove (the messages stay)",
      ),
  )
    .option('--offset <n>', 'add n', number)
    .option('--scale <k>', 'multiply by k', number)
    .option('--set <v>', 'replace by v', number)
    .option('--remove', "remove the metric's values")
    .action(
      async (
        metric: string,
        options: CorrectionOptions & { offset?: number; scale?: number; set?: number; remove?: boolean },
      ) => {
        const chosen = (['offset', 'scale', 'set', 'remove'] as const).filter(
          (a) => options[a] !== undefined,
        );
        if (chosen.length !== 1)
          throw new InvalidArgumentError('exactly one of --offset, --scale, --set, --remove');
        const [action] = chosen;
        await run(action, metric, action === 'remove' ? 0 : Number(options[action]), options);
      },
    );

  correctionOptions(
    telemetry.command('delete').description('delete the stored messages of the devices in a range'),
  ).action((options: CorrectionOptions) => run('delete', '', 0, options));

  withClickHouseOptions(
    telemetry
      .command('corrections')
      .description('the corrections recorded, newest first')
      .option('--limit <n>', 'at most n', number, 50)
      .option('--json', 'machine-readable output'),
  ).action(async (options: ClickHouseOptions & { limit: number; json?: boolean }) => {
    const records = await withClickHouse(options, (clickhouse) => listCorrections(clickhouse, options.limit));
    if (options.json) console.log(JSON.stringify(records, null, 2));
    else console.log(records.length === 0 ? 'no corrections' : records.map(formatCorrection).join('\n\n'));
  });
}
