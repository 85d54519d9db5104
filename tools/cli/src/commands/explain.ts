import { stringLiteral, type AlarmRowAsRead } from '@dmp/clickhouse';
import { loadConfig } from '@dmp/config';
import {
  ALARM_EVENTS_TABLE,
  ALARM_EXPLANATIONS_TABLE,
  ALARMS_TABLE,
  DEAD_LETTERS_TABLE,
} from '@dmp/contracts';
import { Command, InvalidArgumentError } from 'commander';
import { z } from 'zod';
import { withClickHouse, withClickHouseOptions, type ClickHouseOptions } from './clickhouse';

/**
 * `dmp explain alarm <id> | aggregate <device> <metric> <minute>` — why a derived value is what it is,
 * read straight from ClickHouse (CLICKHOUSE_*), where dmp-data keeps every alarm transition with what
 * explains it (`alarm_explanations`: the values the rule's conditions read, the rule's text in the rule
 * set version that decided it, the trace id) and every raw row and dead letter. Not through dmp-kernel:
 * the kernel holds only open alarms, the history is in ClickHouse, and an explanation is wanted most
 * when the kernel is not well.
 */

const jaegerSection = z
  .object({ JAEGER_UI_URL: z.url().default('http://127.0.0.1:16686') })
  .transform((e) => ({ url: e.JAEGER_UI_URL.replace(/\/+$/, '') }));

interface ExplainOptions extends ClickHouseOptions {
  json?: boolean;
}

const iso = (ms: number): string => (ms > 0 ? new Date(ms).toISOString() : '-');
const parseJson = (text: string): unknown => {
  try {
    return JSON.parse(text) as unknown;
  } catch {
    return text;
  }
};

// ---------------------------------------------------------------------------------------------
// explain alarm
// ---------------------------------------------------------------------------------------------

export interface AlarmTransitionExplanation {
  version: number;
  transition: string;
  state: string;
  ts: string;
  /** The telemetry message that drove it ('' for the timer's raises and acknowledgements). */
  messageId: string;
  /** That message as stored (`telemetry_raw`): its time and metrics; null when not stored (yet). */
  telemetry: { ts: string; receivedAt: string; metrics: Record<string, number | string> } | null;
  /** What the rule's conditions read at the transition, by path; null: absent. */
  inputs: Record<string, unknown>;
  acknowledgedBy: string;
  rulesetVersion: string;
  traceId: string;
  /** The trace in Jaeger's UI ('' without a trace id). */
  traceUrl: string;
}

export interface AlarmExplanation {
  alarmId: string;
  deviceId: string;
  ruleId: string;
  ruleName: string;
  severity: string;
  state: string;
  message: string;
  transitions: AlarmTransitionExplanation[];
  /** The rule's text per rule set version that decided a transition (several when it changed meanwhile). */
  rules: { rulesetVersion: string; text: string }[];
}

export const explainAlarmSql = {
  alarm: (alarmId: string) =>
    `SELECT device_id, rule_id, rule_name, severity, state, message FROM ${ALARMS_TABLE} FINAL WHERE alarm_id = ${stringLiteral(alarmId)}`,
  events: (alarmId: string, deviceId: string) =>
    `SELECT toUInt64(version) AS version, transition, state, ts_ms, message_id, acknowledged_by, ruleset_version
FROM ${ALARM_EVENTS_TABLE} FINAL
WHERE device_id = ${stringLiteral(deviceId)} AND alarm_id = ${stringLiteral(alarmId)}
ORDER BY version`,
  explanations: (alarmId: string, deviceId: string) =>
    `SELECT toUInt64(version) AS version, inputs_json, rule_text, trace_id
FROM ${ALARM_EXPLANATIONS_TABLE} FINAL
WHERE device_id = ${stringLiteral(deviceId)} AND alarm_id = ${stringLiteral(alarmId)}`,
  messages: (deviceId: string, messageIds: readonly string[]) =>
    `SELECT message_id, ts_ms, received_at_ms, metric_names, metric_values, text_names, text_values
FROM telemetry_raw FINAL
WHERE device_id = ${stringLiteral(deviceId)} AND message_id IN (${messageIds.map(stringLiteral).join(', ')})`,
};

export async function explainAlarm(alarmId: string, options: ExplainOptions): Promise<AlarmExplanation> {
  const jaeger = loadConfig({ jaeger: jaegerSection }).jaeger.url;
  return withClickHouse(options, async (clickhouse) => {
    const [alarm] = await clickhouse.query<
      Pick<AlarmRowAsRead, 'device_id' | 'rule_id' | 'rule_name' | 'severity' | 'state' | 'message'>
    >(explainAlarmSql.alarm(alarmId));
    if (!alarm)
      throw new Error(`no alarm ${alarmId} in ClickHouse (ids look like alm-…; see \`GET /alarms\`)`);
    const events = await clickhouse.query<{
      version: string | number;
      transition: string;
      state: string;
      ts_ms: string | number;
      message_id: string;
      acknowledged_by: string;
      ruleset_version: string;
    }>(explainAlarmSql.events(alarmId, alarm.device_id));
    const explanations = new Map(
      (
        await clickhouse.query<{
          version: string | number;
          inputs_json: string;
          rule_text: string;
          trace_id: string;
        }>(explainAlarmSql.explanations(alarmId, alarm.device_id))
      ).map((row) => [Number(row.version), row]),
    );
    const ids = [...new Set(events.map((e) => e.message_id).filter(Boolean))];
    const messages = new Map(
      (ids.length
        ? await clickhouse.query<{
            message_id: string;
            ts_ms: string | number;
            received_at_ms: string | number;
            metric_names: string[];
            metric_values: number[];
            text_names: string[];
            text_values: string[];
          }>(explainAlarmSql.messages(alarm.device_id, ids))
        : []
      ).map((row) => [row.message_id, row]),
    );
    const rules: AlarmExplanation['rules'] = [];
    const transitions = events.map((event): AlarmTransitionExplanation => {
      const why = explanations.get(Number(event.version));
      const text = why?.rule_text ?? '';
      if (text && !rules.some((r) => r.rulesetVersion === event.ruleset_version && r.text === text))
        rules.push({ rulesetVersion: event.ruleset_version, text });
      const raw = messages.get(event.message_id);
      const metrics: Record<string, number | string> = {};
      raw?.metric_names.forEach((name, i) => (metrics[name] = Number(raw.metric_values[i])));
      raw?.text_names.forEach((name, i) => (metrics[name] = raw.text_values[i]));
      const traceId = why?.trace_id ?? '';
      return {
        version: Number(event.version),
        transition: event.transition,
        state: event.state,
        ts: iso(Number(event.ts_ms)),
        messageId: event.message_id,
        telemetry: raw
          ? { ts: iso(Number(raw.ts_ms)), receivedAt: iso(Number(raw.received_at_ms)), metrics }
          : null,
        inputs: why ? ((parseJson(why.inputs_json) as Record<string, unknown> | null) ?? {}) : {},
        acknowledgedBy: event.acknowledged_by,
        rulesetVersion: event.ruleset_version,
        traceId,
        traceUrl: traceId ? `${jaeger}/trace/${traceId}` : '',
      };
    });
    return {
      alarmId,
      deviceId: alarm.device_id,
      ruleId: alarm.rule_id,
      ruleName: alarm.rule_name,
      severity: alarm.severity,
      state: alarm.state,
      message: alarm.message,
      transitions,
      rules,
    };
  });
}

const formatValue = (value: unknown): string => (value === null ? '(absent)' : JSON.stringify(value));

export function printAlarmExplanation(report: AlarmExplanation): void {
  console.log(
    `alarm ${report.alarmId}: rule ${report.ruleId} (${report.ruleName}) on ${report.deviceId}, ${report.severity}, now ${report.state}`,
  );
  console.log(`  "${report.message}"`);
  for (const t of report.transitions) {
    console.log(
      `\nv${t.version} ${t.transition.padEnd(12)} ${t.ts}  rule set ${t.rulesetVersion || '-'}${t.acknowledgedBy ? `  by ${t.acknowledgedBy}` : ''}`,
    );
    if (t.messageId) {
      const m = t.telemetry;
      console.log(
        `  message  ${t.messageId}${m ? ` (ts ${m.ts}, received ${m.receivedAt}) ${JSON.stringify(m.metrics)}` : ' (not in telemetry_raw)'}`,
      );
    } else
      console.log(
        `  message  - (${t.transition === 'acknowledged' ? 'an operator' : t.transition === 'raised' ? "the timer: the condition held for the rule's duration" : 'no message'})`,
      );
    const inputs = Object.entries(t.inputs);
    if (inputs.length)
      console.log(`  inputs   ${inputs.map(([k, v]) => `${k} = ${formatValue(v)}`).join(', ')}`);
    console.log(`  trace    ${t.traceId ? `${t.traceId}  ${t.traceUrl}` : '-'}`);
  }
  for (const rule of report.rules) {
    console.log(`\nrule ${report.ruleId} in rule set ${rule.rulesetVersion}:`);
    console.log(rule.text);
  }
  if (report.transitions.length === 0) console.log('\nno transitions stored (yet)');
}

// ---------------------------------------------------------------------------------------------
// explain aggregate
// ---------------------------------------------------------------------------------------------

export interface RawSample {
  messageId: string;
  tsMs: number;
  value: number;
}

export interface MinuteAggregate {
  samples: number;
  sum: number;
  min: number;
  max: number;
  avg: number;
  first: number;
  last: number;
  firstTsMs: number;
  lastTsMs: number;
}

/**
 * A minute's aggregate recomputed from its raw samples, as dmp-data's aggregator does: first and last
 * by device time, ties broken by message id. Undefined without samples.
 */
export function aggregateOf(samples: readonly RawSample[]): MinuteAggregate | undefined {
  if (samples.length === 0) return undefined;
  const ordered = [...samples].sort(
    (a, b) => a.tsMs - b.tsMs || (a.messageId < b.messageId ? -1 : a.messageId > b.messageId ? 1 : 0),
  );
  const values = ordered.map((s) => s.value);
  const sum = values.reduce((a, b) => a + b, 0);
  return {
    samples: values.length,
    sum,
    min: Math.min(...values),
    max: Math.max(...values),
    avg: sum / values.length,
    first: values[0],
    last: values[values.length - 1],
    firstTsMs: ordered[0].tsMs,
    lastTsMs: ordered[ordered.length - 1].tsMs,
  };
}

const AGGREGATE_FIELDS = ['samples', 'sum', 'min', 'max', 'avg', 'first', 'last'] as const;

/** The fields where the stored aggregate and the recomputation differ (floating sums within 1e-9, relative). */
export function aggregateDifferences(
  recomputed: MinuteAggregate | undefined,
  stored: MinuteAggregate | undefined,
): { field: string; stored: number | null; recomputed: number | null }[] {
  if (!recomputed && !stored) return [];
  const close = (a: number, b: number) => Math.abs(a - b) <= 1e-9 * Math.max(1, Math.abs(a), Math.abs(b));
  return AGGREGATE_FIELDS.flatMap((field) => {
    const r = recomputed?.[field];
    const s = stored?.[field];
    if (r !== undefined && s !== undefined && close(r, s)) return [];
    return [{ field, stored: s ?? null, recomputed: r ?? null }];
  });
}

export interface AggregateExplanation {
  deviceId: string;
  metric: string;
  minute: string;
  rows: {
    messageId: string;
    ts: string;
    receivedAt: string;
    insertedAt: string;
    value: number;
    /** Inserted after the minute ended (in whole seconds): late data. */
    late: boolean;
    /** Inserted after the stored aggregate was computed: not in it yet. */
    afterAggregate: boolean;
  }[];
  recomputed: MinuteAggregate | null;
  stored: (MinuteAggregate & { computedAt: string; computations: number; firstComputedAt: string }) | null;
  differences: ReturnType<typeof aggregateDifferences>;
  deadLetters: {
    messageId: string;
    receivedAt: string;
    code: string;
    message: string;
    source: string;
    traceId: string;
    payload: string;
  }[];
}

export const explainAggregateSql = {
  rows: (deviceId: string, metric: string, minute: number) =>
    `SELECT message_id, ts_ms, received_at_ms, toUInt32(inserted_at) AS inserted_at,
       metric_values[indexOf(metric_names, ${stringLiteral(metric)})] AS value
FROM telemetry_raw FINAL
WHERE device_id = ${stringLiteral(deviceId)} AND ts >= toDateTime(${minute}) AND ts < toDateTime(${minute + 60})
  AND has(metric_names, ${stringLiteral(metric)})
ORDER BY ts_ms, message_id`,
  stored: (deviceId: string, metric: string, minute: number) =>
    `SELECT samples, value_sum, value_min, value_max, value_first, value_last, first_ts_ms, last_ts_ms, computed_at_ms
FROM telemetry_1m FINAL
WHERE device_id = ${stringLiteral(deviceId)} AND metric = ${stringLiteral(metric)} AND minute = toDateTime(${minute})`,
  /** Every computation not merged away yet (without FINAL): how often, and the earliest one kept. */
  computations: (deviceId: string, metric: string, minute: number) =>
    `SELECT count() AS n, min(computed_at_ms) AS first
FROM telemetry_1m
WHERE device_id = ${stringLiteral(deviceId)} AND metric = ${stringLiteral(metric)} AND minute = toDateTime(${minute})`,
  /** Received in the minute, or carrying a `ts` (epoch ms) in it. */
  deadLetters: (deviceId: string, minute: number) =>
    `SELECT message_id, received_at_ms, error_code, error_message, source, trace_id, payload_text
FROM ${DEAD_LETTERS_TABLE} FINAL
WHERE device_id = ${stringLiteral(deviceId)}
  AND ((received_at >= toDateTime(${minute}) AND received_at < toDateTime(${minute + 60}))
    OR (visitParamExtractUInt(payload_text, 'ts') >= ${minute * 1000} AND visitParamExtractUInt(payload_text, 'ts') < ${(minute + 60) * 1000}))
ORDER BY received_at_ms, message_id`,
};

export async function explainAggregate(
  deviceId: string,
  metric: string,
  minuteMs: number,
  options: ExplainOptions,
): Promise<AggregateExplanation> {
  const minute = Math.floor(minuteMs / 60_000) * 60;
  return withClickHouse(options, async (clickhouse) => {
    const [raw, [stored], [computations], letters] = await Promise.all([
      clickhouse.query<{
        message_id: string;
        ts_ms: string | number;
        received_at_ms: string | number;
        inserted_at: string | number;
        value: string | number;
      }>(explainAggregateSql.rows(deviceId, metric, minute)),
      clickhouse.query<Record<string, string | number>>(explainAggregateSql.stored(deviceId, metric, minute)),
      clickhouse.query<{ n: string | number; first: string | number }>(
        explainAggregateSql.computations(deviceId, metric, minute),
      ),
      clickhouse.query<{
        message_id: string;
        received_at_ms: string | number;
        error_code: string;
        error_message: string;
        source: string;
        trace_id: string;
        payload_text: string;
      }>(explainAggregateSql.deadLetters(deviceId, minute)),
    ]);
    const samples = raw.map((r) => ({
      messageId: r.message_id,
      tsMs: Number(r.ts_ms),
      value: Number(r.value),
    }));
    const recomputed = aggregateOf(samples);
    const storedAggregate: AggregateExplanation['stored'] = stored
      ? {
          samples: Number(stored.samples),
          sum: Number(stored.value_sum),
          min: Number(stored.value_min),
          max: Number(stored.value_max),
          avg: Number(stored.value_sum) / Math.max(1, Number(stored.samples)),
          first: Number(stored.value_first),
          last: Number(stored.value_last),
          firstTsMs: Number(stored.first_ts_ms),
          lastTsMs: Number(stored.last_ts_ms),
          computedAt: iso(Number(stored.computed_at_ms)),
          computations: Number(computations?.n ?? 0),
          firstComputedAt: iso(Number(computations?.first ?? 0)),
        }
      : null;
    const computedAtMs = stored ? Number(stored.computed_at_ms) : Infinity;
    return {
      deviceId,
      metric,
      minute: iso(minute * 1000),
      rows: raw.map((r) => ({
        messageId: r.message_id,
        ts: iso(Number(r.ts_ms)),
        receivedAt: iso(Number(r.received_at_ms)),
        insertedAt: iso(Number(r.inserted_at) * 1000),
        value: Number(r.value),
        late: Number(r.inserted_at) >= minute + 60,
        afterAggregate: Number(r.inserted_at) * 1000 > computedAtMs,
      })),
      recomputed: recomputed ?? null,
      stored: storedAggregate,
      differences: aggregateDifferences(recomputed, storedAggregate ?? undefined),
      deadLetters: letters.map((l) => ({
        messageId: l.message_id,
        receivedAt: iso(Number(l.received_at_ms)),
        code: l.error_code,
        message: l.error_message,
        source: l.source,
        traceId: l.trace_id,
        payload: l.payload_text.slice(0, 512),
      })),
    };
  });
}

export function printAggregateExplanation(report: AggregateExplanation): void {
  console.log(`${report.deviceId} ${report.metric} minute ${report.minute}`);
  console.log(`\nraw rows (telemetry_raw FINAL): ${report.rows.length}`);
  if (report.rows.length) {
    console.log('  ts                        value         message id                        inserted at');
    for (const r of report.rows)
      console.log(
        `  ${r.ts}  ${String(r.value).padEnd(12)}  ${r.messageId.padEnd(32)}  ${r.insertedAt}${r.late ? '  late' : ''}${r.afterAggregate ? '  after the stored aggregate' : ''}`,
      );
  }
  const cell = (a: MinuteAggregate | null | undefined, field: (typeof AGGREGATE_FIELDS)[number]) =>
    a ? String(Number(a[field].toPrecision(12))) : '-';
  console.log('\n         recomputed      stored (telemetry_1m FINAL)');
  for (const field of AGGREGATE_FIELDS)
    console.log(
      `  ${field.padEnd(7)} ${cell(report.recomputed, field).padEnd(15)} ${cell(report.stored, field)}${report.differences.some((d) => d.field === field) ? '  ← differs' : ''}`,
    );
  if (report.stored)
    console.log(
      `  stored row computed at ${report.stored.computedAt} (${report.stored.computations} computation(s) not merged away yet, the earliest at ${report.stored.firstComputedAt})`,
    );
  else
    console.log(
      '  no stored aggregate (not computed yet: minutes are aggregated once they are past the lateness)',
    );
  console.log(
    report.differences.length === 0
      ? '  the stored aggregate is what its raw rows give'
      : `  differs in ${report.differences.map((d) => d.field).join(', ')}: rows stored or replaced after the last computation (recomputed at the aggregator's next pass)`,
  );
  console.log(`\ndead letters of ${report.deviceId} in that minute: ${report.deadLetters.length}`);
  for (const l of report.deadLetters)
    console.log(
      `  ${l.receivedAt}  ${l.code}  ${l.messageId}  ${l.source}${l.traceId ? `  trace ${l.traceId}` : ''}\n    ${l.message}`,
    );
}

// ---------------------------------------------------------------------------------------------

const minuteArg = (value: string): number => {
  const ms = /^\d+$/.test(value) ? Number(value) : Date.parse(value);
  if (!Number.isFinite(ms))
    throw new InvalidArgumentError('a minute: ISO 8601 (2026-01-01T10:15Z) or epoch ms');
  return ms;
};

const withCommonOptions = (command: Command) =>
  withClickHouseOptions(command).option('--json', 'machine-readable output');

export function registerExplainCommand(program: Command): void {
  const explain = program
    .command('explain')
    .description('why a derived value is what it is: an alarm, a per-minute aggregate');

  withCommonOptions(
    explain
      .command('alarm <alarmId>')
      .description(
        "each transition of an alarm: the message that drove it, the values the rule's conditions read, the rule's text and rule set version, the trace id to open in Jaeger (JAEGER_UI_URL)",
      ),
  ).action(async (alarmId: string, options: ExplainOptions) => {
    const report = await explainAlarm(alarmId, options);
    if (options.json) console.log(JSON.stringify(report, null, 2));
    else printAlarmExplanation(report);
  });

  withCommonOptions(
    explain
      .command('aggregate <deviceId> <metric> <minute>')
      .description(
        'a telemetry_1m row: its raw rows, count/min/max/avg/sum recomputed beside the stored values, late rows, and the dead letters of that device in that minute',
      ),
  ).action(async (deviceId: string, metric: string, minute: string, options: ExplainOptions) => {
    const report = await explainAggregate(deviceId, metric, minuteArg(minute), options);
    if (options.json) console.log(JSON.stringify(report, null, 2));
    else printAggregateExplanation(report);
  });
}
