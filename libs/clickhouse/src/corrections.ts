import { backoffDelay } from '@dmp/flow';
import { createHash } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { z } from 'zod';
import type { ClickHouseRepository } from './clickhouse.repository';
import { refuseCluster } from './cluster';
import { stringList, stringLiteral } from './sql';
import { Tables, type LatestValueType, type MinuteMarkRow, type TelemetryLatestRow } from './tables';

/**
 * Corrections of stored telemetry: the numeric values of one metric offset, scaled, set or removed, or
 * whole messages deleted, for a set of devices and a time range — recorded in `telemetry_corrections`,
 * with what derives from them recomputed: the 1-minute aggregates (by dmp-data's aggregator, from marks,
 * as for late data) and the latest values.
 *
 * The raw rows change by ClickHouse mutations (ALTER … UPDATE / DELETE) of `telemetry_raw` and of its
 * minute-ordered copy `telemetry_1m_source`; a mutation changes the rows stored when it is submitted,
 * not rows inserted later. Each mutation carries the correction's id, so a correction run again —
 * after a crash at any step — submits none twice (an offset is never applied twice) and goes on where
 * it stopped. The id follows from what is corrected: asking again for the same is the same correction.
 * One server only for now: on a cluster (CLICKHOUSE_CLUSTER) it refuses to start.
 */

export const CORRECTIONS_TABLE = 'telemetry_corrections';

export const CORRECTION_ACTIONS = ['offset', 'scale', 'set', 'remove', 'delete'] as const;
export type CorrectionAction = (typeof CORRECTION_ACTIONS)[number];

const MAX_DEVICES = 1_000;

export const correctionRequestSchema = z
  .object({
    /** offset: value + operand; scale: value × operand; set: operand; remove: the metric's values; delete: the messages. */
    action: z.enum(CORRECTION_ACTIONS),
    /** The numeric metric; '' for `delete`, which removes whole messages. */
    metric: z.string().max(128),
    operand: z.number().finite(),
    deviceIds: z.array(z.string().min(1).max(128)).min(1).max(MAX_DEVICES),
    /** Device time, epoch ms: from inclusive, to exclusive. */
    fromMs: z.number().int().nonnegative(),
    toMs: z.number().int().positive(),
    reason: z.string().trim().min(1, 'say why (it is recorded)').max(1_000),
    requestedBy: z.string().min(1).max(128),
  })
  .refine((r) => r.fromMs < r.toMs, { message: 'from must be before to', path: ['toMs'] })
  .refine((r) => (r.action === 'delete') === (r.metric === ''), {
    message: 'a metric for offset, scale, set and remove; none for delete (whole messages)',
    path: ['metric'],
  });

export type CorrectionRequest = z.infer<typeof correctionRequestSchema>;

export type CorrectionState = 'requested' | 'applied' | 'done';

export interface CorrectionRecord {
  correction_id: string;
  version: number;
  state: CorrectionState;
  action: CorrectionAction;
  metric: string;
  operand: number;
  device_ids: string[];
  from_ms: number;
  to_ms: number;
  reason: string;
  requested_by: string;
  requested_at_ms: number;
  rows_affected: number;
  minutes_recomputed: number;
  latest_recomputed: number;
  /** JSON of LatestPair[]. */
  latest_pairs: string;
}

/** A `telemetry_latest` row the correction recomputes: (device, metric) and the type its value had. */
export interface LatestPair {
  device_id: string;
  metric: string;
  value_type: LatestValueType;
}

/** The id of a correction: the same request (whoever asks, whatever the reason) is the same correction. */
export function correctionId(r: CorrectionRequest): string {
  const what = [r.action, r.metric, r.operand, [...new Set(r.deviceIds)].sort(), r.fromMs, r.toMs];
  return `cor-${createHash('sha1').update(JSON.stringify(what)).digest('hex').slice(0, 24)}`;
}

// ---------------------------------------------------------------------------------------------
// The statements (pure)
// ---------------------------------------------------------------------------------------------

/** The condition that names the correction in its mutations, visible in `system.mutations.command`. */
const tag = (id: string) => `'dmp-correction:${id}' != ''`;

const devices = (r: CorrectionRequest) => `device_id IN (${stringList(new Set(r.deviceIds))})`;

/** The raw rows (and their minute-ordered copies) the correction changes. */
export function affectedRows(r: CorrectionRequest): string {
  const metric = r.action === 'delete' ? '' : ` AND has(metric_names, ${stringLiteral(r.metric)})`;
  return `${devices(r)} AND ts_ms >= ${r.fromMs} AND ts_ms < ${r.toMs}${metric}`;
}

/** The mutation of `telemetry_raw` and `telemetry_1m_source` (both have the metric arrays and ts_ms). */
export function rowsMutation(r: CorrectionRequest, id: string): string {
  const where = `WHERE ${affectedRows(r)} AND ${tag(id)}`;
  const m = stringLiteral(r.metric);
  const operand = `(${r.operand})`;
  switch (r.action) {
    case 'delete':
      return `DELETE ${where}`;
    case 'remove':
      return `UPDATE metric_values = arrayFilter((v, n) -> n != ${m}, metric_values, metric_names), metric_names = arrayFilter(n -> n != ${m}, metric_names) ${where}`;
    default: {
      const value = { offset: `v + ${operand}`, scale: `v * ${operand}`, set: operand }[r.action];
      return `UPDATE metric_values = arrayMap((n, v) -> if(n = ${m}, ${value}, v), metric_names, metric_values) ${where}`;
    }
  }
}

/** The minutes the range touches, as `minute` (DateTime) bounds. */
function minuteRange(r: CorrectionRequest): string {
  const first = Math.floor(r.fromMs / 60_000) * 60;
  return `minute >= toDateTime(${first}) AND minute < toDateTime(${Math.ceil(r.toMs / 1000)})`;
}

/**
 * Removes the range's aggregates of the metric (of every metric for `delete`): the aggregator then
 * recomputes those that still have rows, and a minute left without any has none.
 */
export function minutesMutation(r: CorrectionRequest, id: string): string {
  const metric = r.action === 'delete' ? '' : ` AND metric = ${stringLiteral(r.metric)}`;
  return `DELETE WHERE ${devices(r)} AND ${minuteRange(r)}${metric} AND ${tag(id)}`;
}

/** The latest values that may come from the range: removed, then recomputed from what raw holds. */
export function latestFilter(r: CorrectionRequest): string {
  const metric = r.action === 'delete' ? '' : ` AND metric = ${stringLiteral(r.metric)}`;
  return `${devices(r)} AND ts_ms >= ${r.fromMs} AND ts_ms < ${r.toMs}${metric}`;
}

export function latestMutation(r: CorrectionRequest, id: string): string {
  return `DELETE WHERE ${latestFilter(r)} AND ${tag(id)}`;
}

/** The (device, minute)s of the range that have numeric rows now: the aggregator recomputes them. */
export function marksSql(r: CorrectionRequest): string {
  return `SELECT DISTINCT device_id, toUInt32(toStartOfMinute(ts)) AS minute FROM ${Tables.raw} FINAL
WHERE ${devices(r)} AND ts_ms >= ${r.fromMs} AND ts_ms < ${r.toMs} AND notEmpty(metric_names)`;
}

/** The newest value of each pair's metric in raw now, by the same order as `telemetry_latest`'s version. */
export function latestFromRawSql(pairs: readonly LatestPair[]): string {
  const ids = stringList(new Set(pairs.map((p) => p.device_id)));
  const metrics = stringList(new Set(pairs.map((p) => p.metric)));
  // Numbers as text too, so that both kinds of metric share one column.
  const from = (names: string, values: string, value: string) => `SELECT device_id, metric,
    argMax(tuple(${value}, ts_ms, message_id, toString(kind), tenant_id, product_id, site_id),
           ts_ms * 1024 + cityHash64(message_id) % 1024) AS newest
  FROM ${Tables.raw} FINAL ARRAY JOIN ${names} AS metric, ${values} AS value
  WHERE device_id IN (${ids}) AND metric IN (${metrics})
  GROUP BY device_id, metric`;
  const field = (i: number) => `tupleElement(newest, ${i})`;
  return `SELECT device_id, metric, ${field(1)} AS value, ${field(2)} AS ts_ms, ${field(3)} AS message_id,
       ${field(4)} AS kind, ${field(5)} AS tenant_id, ${field(6)} AS product_id, ${field(7)} AS site_id
FROM (${from('metric_names', 'metric_values', 'toString(value)')}
  UNION ALL
  ${from('text_names', 'text_values', 'value')})`;
}

// ---------------------------------------------------------------------------------------------
// Running one (thin I/O)
// ---------------------------------------------------------------------------------------------

export interface CorrectionResult {
  record: CorrectionRecord;
  /** False when it had been done before: nothing was changed again. */
  ranNow: boolean;
}

export interface CorrectionOptions {
  /** How long to wait for each mutation, and for the aggregator to recompute the minutes. */
  timeoutMs?: number;
  now?: () => number;
  /** Progress lines for a person watching. */
  log?: (line: string) => void;
}

/**
 * Applies a correction, or finishes one that was interrupted, or reports one done before. Resolves
 * once the raw rows, the latest values and the 1-minute aggregates all reflect it; the aggregates are
 * recomputed by dmp-data's aggregator, which must be running.
 */
export async function applyCorrection(
  clickhouse: ClickHouseRepository,
  input: CorrectionRequest,
  options: CorrectionOptions = {},
): Promise<CorrectionResult> {
  const request = correctionRequestSchema.parse(input);
  const now = options.now ?? Date.now;
  const timeoutMs = options.timeoutMs ?? 300_000;
  const log = options.log ?? (() => undefined);
  if (request.toMs > now())
    throw new Error('to is in the future: a correction applies to telemetry stored already');
  refuseCluster(clickhouse, 'corrections');
  const id = correctionId(request);

  let record = await readCorrection(clickhouse, id);
  if (record?.state === 'done') return { record, ranNow: false };
  if (!record) {
    const [{ rows }] = await clickhouse.query<{ rows: string }>(
      `SELECT count() AS rows FROM ${Tables.raw} FINAL WHERE ${affectedRows(request)}`,
    );
    const pairs = await clickhouse.query<LatestPair>(
      `SELECT device_id, metric, toString(value_type) AS value_type FROM ${Tables.latest} FINAL
       WHERE ${latestFilter(request)}`,
    );
    record = {
      correction_id: id,
      version: now(),
      state: 'requested',
      action: request.action,
      metric: request.metric,
      operand: request.operand,
      device_ids: [...new Set(request.deviceIds)],
      from_ms: request.fromMs,
      to_ms: request.toMs,
      reason: request.reason,
      requested_by: request.requestedBy,
      requested_at_ms: now(),
      rows_affected: Number(rows),
      minutes_recomputed: 0,
      latest_recomputed: 0,
      latest_pairs: JSON.stringify(pairs),
    };
    await clickhouse.insertRows(CORRECTIONS_TABLE, [record]);
    log(`${id}: ${record.rows_affected} stored message(s) to change`);
  }

  if (record.state === 'requested') {
    // Rows first, then what derives from them: the aggregates and latest values removed next are
    // recomputed from the changed rows only.
    await mutate(clickhouse, id, [Tables.raw, Tables.minuteSource], rowsMutation(request, id), timeoutMs);
    await mutate(clickhouse, id, [Tables.minute], minutesMutation(request, id), timeoutMs);
    await mutate(clickhouse, id, [Tables.latest], latestMutation(request, id), timeoutMs);
    record = { ...record, state: 'applied', version: now() };
    await clickhouse.insertRows(CORRECTIONS_TABLE, [record]);
    log(`${id}: stored rows changed`);
  }

  // Applied: recompute (again, harmlessly, after an interruption).
  const pairs = JSON.parse(record.latest_pairs) as LatestPair[];
  const latest = pairs.length > 0 ? await recomputedLatest(clickhouse, pairs, now()) : [];
  if (latest.length > 0) await clickhouse.insertRows(Tables.latest, latest);
  const marks = (await clickhouse.query<{ device_id: string; minute: number }>(marksSql(request))).map(
    (m): MinuteMarkRow => ({ device_id: m.device_id, minute: Number(m.minute) }),
  );
  const markedAt = now();
  if (marks.length > 0)
    await clickhouse.insertRows(Tables.minuteMarks, marks, {
      columns: ['device_id', 'minute'],
      quorum: true,
    });
  log(
    `${id}: ${latest.length} latest value(s) recomputed; ${marks.length} minute(s) marked for the aggregator`,
  );
  await waitUntil(
    () => recomputedMinutes(clickhouse, request, markedAt).then((n) => n >= marks.length),
    timeoutMs,
    () =>
      `the aggregator did not recompute the ${marks.length} minute(s) within ${timeoutMs} ms: is dmp-data running, ` +
      `with DATA_AGGREGATION_ENABLED? Run the same correction again to go on waiting.`,
  );
  record = {
    ...record,
    state: 'done',
    version: now(),
    minutes_recomputed: marks.length,
    latest_recomputed: latest.length,
  };
  await clickhouse.insertRows(CORRECTIONS_TABLE, [record]);
  return { record, ranNow: true };
}

export async function readCorrection(
  clickhouse: ClickHouseRepository,
  id: string,
): Promise<CorrectionRecord | undefined> {
  const [row] = await clickhouse.query<CorrectionRecord>(
    `SELECT * FROM ${CORRECTIONS_TABLE} FINAL WHERE correction_id = ${stringLiteral(id)}`,
  );
  return row && normalized(row);
}

/** The corrections recorded, newest first. */
export async function listCorrections(
  clickhouse: ClickHouseRepository,
  limit = 50,
): Promise<CorrectionRecord[]> {
  const rows = await clickhouse.query<CorrectionRecord>(
    `SELECT * FROM ${CORRECTIONS_TABLE} FINAL ORDER BY requested_at_ms DESC LIMIT ${Math.trunc(limit)}`,
  );
  return rows.map(normalized);
}

/** 64-bit integers arrive as strings. */
const normalized = (row: CorrectionRecord): CorrectionRecord => ({
  ...row,
  version: Number(row.version),
  from_ms: Number(row.from_ms),
  to_ms: Number(row.to_ms),
  requested_at_ms: Number(row.requested_at_ms),
  rows_affected: Number(row.rows_affected),
  minutes_recomputed: Number(row.minutes_recomputed),
  latest_recomputed: Number(row.latest_recomputed),
});

/** Submits the mutation to each table unless the correction submitted it before, and waits until it is done. */
async function mutate(
  clickhouse: ClickHouseRepository,
  id: string,
  tables: readonly string[],
  mutation: string,
  timeoutMs: number,
): Promise<void> {
  const submitted = async () =>
    clickhouse.query<{ table: string; is_done: number }>(
      `SELECT table, is_done FROM system.mutations
       WHERE database = ${stringLiteral(clickhouse.database)} AND table IN (${stringList(tables)})
         AND position(command, ${stringLiteral(`dmp-correction:${id}`)}) > 0`,
    );
  const before = new Set((await submitted()).map((m) => m.table));
  for (const table of tables)
    if (!before.has(table)) await clickhouse.command(`ALTER TABLE ${table} ${mutation}`);
  await waitUntil(
    async () => {
      const states = await submitted();
      return states.length >= tables.length && states.every((m) => Number(m.is_done) === 1);
    },
    timeoutMs,
    () => `the mutation of ${tables.join(', ')} is not done after ${timeoutMs} ms (see system.mutations)`,
  );
}

async function recomputedLatest(
  clickhouse: ClickHouseRepository,
  pairs: readonly LatestPair[],
  insertedAt: number,
): Promise<TelemetryLatestRow[]> {
  const types = new Map(pairs.map((p) => [`${p.device_id}\u0000${p.metric}`, p.value_type]));
  const rows = await clickhouse.query<{
    device_id: string;
    metric: string;
    value: string;
    ts_ms: string;
    message_id: string;
    kind: TelemetryLatestRow['kind'];
    tenant_id: string;
    product_id: string;
    site_id: string;
  }>(latestFromRawSql(pairs));
  return rows.flatMap((row) => {
    const type = types.get(`${row.device_id}\u0000${row.metric}`);
    if (!type) return [];
    const text = type === 'text';
    return [
      {
        device_id: row.device_id,
        metric: row.metric,
        value_type: type,
        value: text ? 0 : Number(row.value),
        text_value: text ? row.value : '',
        ts_ms: Number(row.ts_ms),
        message_id: row.message_id,
        kind: row.kind,
        tenant_id: row.tenant_id,
        product_id: row.product_id,
        site_id: row.site_id,
        inserted_at: Math.floor(insertedAt / 1000),
      },
    ];
  });
}

/** How many of the range's (device, minute)s have aggregates computed since `sinceMs`. */
async function recomputedMinutes(
  clickhouse: ClickHouseRepository,
  r: CorrectionRequest,
  sinceMs: number,
): Promise<number> {
  const [{ n }] = await clickhouse.query<{ n: string }>(
    `SELECT uniqExact(device_id, minute) AS n FROM ${Tables.minute} FINAL
     WHERE ${devices(r)} AND ${minuteRange(r)} AND computed_at_ms >= ${sinceMs}`,
  );
  return Number(n);
}

async function waitUntil(
  done: () => Promise<boolean>,
  timeoutMs: number,
  failure: () => string,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (let attempt = 1; !(await done()); attempt++) {
    if (Date.now() > deadline) throw new Error(failure());
    await sleep(backoffDelay(attempt, { baseMs: 100, maxMs: 2_000 }));
  }
}
