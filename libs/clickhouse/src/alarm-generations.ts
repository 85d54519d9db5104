import { ALARMS_TABLE, DmpError, HistoryErrorCode, type AlarmEvent } from '@dmp/contracts';
import { createHash } from 'node:crypto';
import { z } from 'zod';
import { toAlarmRow, type AlarmRow, type LiveAlarmColumns } from './alarm-rows';
import type { ClickHouseRepository } from './clickhouse.repository';
import { refuseCluster } from './cluster';
import { stringList, stringLiteral } from './sql';
import { Tables } from './tables';

/**
 * Alarm generations: a time range of history re-run through a chosen rule set version
 * (`dmp rules reprocess --apply`), the alarms that version would have raised written as a generation of
 * their own in `alarm_generation_alarms`, recorded in `alarm_generations` (migration 013) — beside the
 * live alarms, never over them, and reversible (`dmp rules revert`). Nothing is sent: no commands, no
 * webhooks, nothing to RocketMQ.
 *
 * As corrections do, a generation's id follows from what is asked — the rule set version, the devices,
 * the range — and from the data it reads (a fingerprint of the stored messages): asking again for the
 * same on the same data is the same generation, and a run interrupted at any point is finished by
 * running it again. Its rows are derived only from that, with ids derived from (generation, rule,
 * device, start), so a resumed run writes the very rows it wrote before and ReplacingMergeTree collapses
 * them. Only an `applied` generation counts: rows of an interrupted one are never read.
 * One server only for now: on a cluster (CLICKHOUSE_CLUSTER) it refuses.
 */

export const GENERATIONS_TABLE = 'alarm_generations';
export const GENERATED_ALARMS_TABLE = 'alarm_generation_alarms';

const MAX_DEVICES = 1_000;

const invalid = (message: string) => new DmpError(HistoryErrorCode.ReprocessInvalid, message);

export const reprocessRequestSchema = z
  .object({
    /** The rule set's content version (`dmp rules validate` prints it). */
    rulesetVersion: z.string().min(1).max(64),
    /** The rule set's files, `{path: text}` as JSON: recorded, so the generation can be read against them. */
    rulesJson: z.string(),
    /** The devices; none: every device with messages in the range. */
    deviceIds: z.array(z.string().min(1).max(128)).max(MAX_DEVICES),
    /** Device time, epoch ms: from inclusive, to exclusive. */
    fromMs: z.number().int().nonnegative(),
    toMs: z.number().int().positive(),
    reason: z.string().trim().min(1, 'say why (it is recorded)').max(1_000),
    requestedBy: z.string().min(1).max(128),
  })
  .refine((r) => r.fromMs < r.toMs, { message: 'from must be before to', path: ['toMs'] });

export type ReprocessRequest = z.infer<typeof reprocessRequestSchema>;

/** Parses a request, refusing it with DMP_ERR_REPROCESS_INVALID (also when `to` is in the future). */
export function parseReprocessRequest(input: unknown, now = Date.now()): ReprocessRequest {
  const parsed = reprocessRequestSchema.safeParse(input);
  if (!parsed.success)
    throw invalid(parsed.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; '));
  if (parsed.data.toMs > now) throw invalid('to is in the future: reprocessing reads history stored already');
  return parsed.data;
}

export type GenerationState = 'requested' | 'applied' | 'reverted';

export interface GenerationRecord {
  generation_id: string;
  version: number;
  state: GenerationState;
  ruleset_version: string;
  rules_json: string;
  /** The devices it covers: those asked for, or those with messages in the range. */
  device_ids: string[];
  from_ms: number;
  to_ms: number;
  data_fingerprint: string;
  reason: string;
  requested_by: string;
  requested_at_ms: number;
  applied_at_ms: number;
  reverted_at_ms: number;
  reverted_by: string;
  messages: number;
  alarms: number;
}

/**
 * One row of `alarm_generation_alarms`: a generated alarm's state at the end of the range — an `alarms`
 * row without the columns only live alarms have, in its generation.
 */
export type GeneratedAlarmRow = Omit<AlarmRow, LiveAlarmColumns> & { generation_id: string };

const sha1 = (what: unknown) => createHash('sha1').update(JSON.stringify(what)).digest('hex');

/**
 * The id of a generation: the same rule set version, devices (none: all) and range, on the same stored
 * messages (`fingerprint`), is the same generation — whoever asks, whatever the reason.
 */
export function generationId(
  r: Pick<ReprocessRequest, 'rulesetVersion' | 'deviceIds' | 'fromMs' | 'toMs'>,
  fingerprint: string,
): string {
  const what = [r.rulesetVersion, [...new Set(r.deviceIds)].sort(), r.fromMs, r.toMs, fingerprint];
  return `gen-${sha1(what).slice(0, 24)}`;
}

/** A generated alarm's id: one per (generation, rule, device, start of the condition). */
export function generatedAlarmId(generation: string, ruleId: string, deviceId: string, startedAt: number) {
  return `gen-${sha1([generation, ruleId, deviceId, startedAt]).slice(0, 32)}`;
}

/**
 * The rows of a generation from the alarm events a replay produced: each alarm's latest event, under
 * its derived id (the replay's own ids are counters, not stable across runs).
 */
export function generatedAlarmRows(generation: string, events: readonly AlarmEvent[]): GeneratedAlarmRow[] {
  const latest = new Map<string, AlarmEvent>();
  for (const e of events) {
    const seen = latest.get(e.alarmId);
    if (!seen || e.version > seen.version) latest.set(e.alarmId, e);
  }
  return [...latest.values()].map((e) => {
    // eslint-disable-next-line @typescript-eslint/no-unused-vars -- dropped: only live alarms have them
    const { acknowledged_at_ms, acknowledged_by, inserted_at, ...row } = toAlarmRow(e);
    return {
      ...row,
      generation_id: generation,
      alarm_id: generatedAlarmId(generation, e.ruleId, e.deviceId, e.startedAt),
    };
  });
}

// ---------------------------------------------------------------------------------------------
// Decisions (pure)
// ---------------------------------------------------------------------------------------------

/**
 * What `--apply` does given the generation's record: write it (new), finish it (interrupted: the same
 * rows again), apply it again (reverted before: the same rows, recorded applied anew) or nothing
 * (applied before).
 */
export type ApplyStep = 'write' | 'resume' | 'reapply' | 'applied-before';

export function planApply(record: Pick<GenerationRecord, 'state'> | undefined): ApplyStep {
  if (!record) return 'write';
  return ({ requested: 'resume', applied: 'applied-before', reverted: 'reapply' } as const)[record.state];
}

/** What `revert` does: revert an applied generation, nothing for a reverted one, refuse the rest. */
export function planRevert(
  id: string,
  record: Pick<GenerationRecord, 'state'> | undefined,
): 'revert' | 'reverted-before' {
  if (!record) throw new DmpError(HistoryErrorCode.GenerationNotFound, `no generation ${id}`);
  if (record.state === 'requested')
    throw new DmpError(
      HistoryErrorCode.GenerationNotApplied,
      `generation ${id} was never applied (interrupted): run the same reprocessing again to finish it`,
    );
  return record.state === 'reverted' ? 'reverted-before' : 'revert';
}

// ---------------------------------------------------------------------------------------------
// The statements (pure)
// ---------------------------------------------------------------------------------------------

export interface HistoryRange {
  fromMs: number;
  toMs: number;
  /** None: every device. */
  deviceIds?: readonly string[];
}

const devicesSql = (r: { deviceIds?: readonly string[] }) =>
  r.deviceIds?.length ? ` AND device_id IN (${stringList(new Set(r.deviceIds))})` : '';

/** The stored messages a generation reads, as a count and an order-free hash: its fingerprint. */
export function fingerprintSql(r: HistoryRange): string {
  return `SELECT count() AS messages,
       toString(sum(cityHash64(device_id, message_id, ts_ms, metric_names, metric_values, text_names, text_values))) AS hash
FROM ${Tables.raw} FINAL
WHERE ts_ms >= ${Math.floor(r.fromMs)} AND ts_ms < ${Math.floor(r.toMs)}${devicesSql(r)}`;
}

const ALARM_COLUMNS =
  'alarm_id, device_id, rule_id, severity, state, message, started_at_ms, raised_at_ms, cleared_at_ms, ruleset_version';

/** A range of alarm starts: epoch ms, or SQL expressions of epoch ms (`toUInt64(toUnixTimestamp(now())) * 1000`). */
export interface AlarmsRange {
  from: number | string;
  to: number | string;
  /** None: every device. */
  deviceIds?: readonly string[];
}

const msSql = (t: number | string) => (typeof t === 'number' ? String(Math.floor(t)) : `(${t})`);

/**
 * The alarms that started in a range, as the newest applied generation covering their device and start
 * has them, else as live processing raised them (`source`: the generation's id, or 'live').
 * docs/analysts.md ("Alarms as reprocessed") shows it; ClickHouse 18.16 and newer.
 */
export function effectiveAlarmsSql(r: AlarmsRange): string {
  const where = `started_at_ms >= ${msSql(r.from)} AND started_at_ms < ${msSql(r.to)}${devicesSql(r)}`;
  return `SELECT source, ${ALARM_COLUMNS}
FROM
(
    SELECT generation_id AS source, ${ALARM_COLUMNS}
    FROM ${GENERATED_ALARMS_TABLE} FINAL
    WHERE ${where}
    UNION ALL
    SELECT 'live' AS source, ${ALARM_COLUMNS}
    FROM ${ALARMS_TABLE} FINAL
    WHERE ${where}
) AS alarms_in_range
ANY LEFT JOIN
(
    -- Per device, its applied generations, newest first: (applied at, id, from, to).
    SELECT device_id, arrayReverseSort(groupArray((applied_at_ms, generation_id, from_ms, to_ms))) AS generations
    FROM ${GENERATIONS_TABLE} FINAL ARRAY JOIN device_ids AS device_id
    WHERE state = 'applied'
    GROUP BY device_id
) AS coverage USING device_id
WHERE source = if(
    (tupleElement(arrayFirst((gen, at) -> tupleElement(gen, 3) <= at AND at < tupleElement(gen, 4),
                             generations, replicate(started_at_ms, generations)), 2) AS covering) = '',
    'live',
    covering)
ORDER BY device_id, started_at_ms, rule_id`;
}

// ---------------------------------------------------------------------------------------------
// Records (thin I/O)
// ---------------------------------------------------------------------------------------------

export async function dataFingerprint(
  clickhouse: ClickHouseRepository,
  r: HistoryRange,
): Promise<{ messages: number; fingerprint: string }> {
  const [row] = await clickhouse.query<{ messages: string; hash: string }>(fingerprintSql(r));
  return { messages: Number(row.messages), fingerprint: `${row.messages}:${row.hash}` };
}

export async function readGeneration(
  clickhouse: ClickHouseRepository,
  id: string,
): Promise<GenerationRecord | undefined> {
  const [row] = await clickhouse.query<GenerationRecord>(
    `SELECT * FROM ${GENERATIONS_TABLE} FINAL WHERE generation_id = ${stringLiteral(id)}`,
  );
  return row && normalized(row);
}

/** The generations recorded, newest first. */
export async function listGenerations(
  clickhouse: ClickHouseRepository,
  limit = 50,
): Promise<GenerationRecord[]> {
  const rows = await clickhouse.query<GenerationRecord>(
    `SELECT * FROM ${GENERATIONS_TABLE} FINAL ORDER BY requested_at_ms DESC LIMIT ${Math.trunc(limit)}`,
  );
  return rows.map(normalized);
}

export async function recordGeneration(
  clickhouse: ClickHouseRepository,
  record: GenerationRecord,
): Promise<void> {
  await clickhouse.insertRows(GENERATIONS_TABLE, [record]);
}

export async function writeGeneratedAlarms(
  clickhouse: ClickHouseRepository,
  rows: readonly GeneratedAlarmRow[],
): Promise<void> {
  for (let i = 0; i < rows.length; i += 10_000)
    await clickhouse.insertRows(GENERATED_ALARMS_TABLE, rows.slice(i, i + 10_000));
}

/** Reverts an applied generation (recorded; its rows stay). Returns the record, and whether it changed. */
export async function revertGeneration(
  clickhouse: ClickHouseRepository,
  id: string,
  by: string,
  now = Date.now(),
): Promise<{ record: GenerationRecord; changed: boolean }> {
  refuseCluster(clickhouse, 'reverts');
  const record = await readGeneration(clickhouse, id);
  if (planRevert(id, record) === 'reverted-before') return { record: record!, changed: false };
  const reverted: GenerationRecord = {
    ...record!,
    state: 'reverted',
    version: Math.max(now, record!.version + 1),
    reverted_at_ms: now,
    reverted_by: by,
  };
  await recordGeneration(clickhouse, reverted);
  return { record: reverted, changed: true };
}

/** 64-bit integers arrive as strings. */
const normalized = (row: GenerationRecord): GenerationRecord => ({
  ...row,
  version: Number(row.version),
  from_ms: Number(row.from_ms),
  to_ms: Number(row.to_ms),
  requested_at_ms: Number(row.requested_at_ms),
  applied_at_ms: Number(row.applied_at_ms),
  reverted_at_ms: Number(row.reverted_at_ms),
  messages: Number(row.messages),
  alarms: Number(row.alarms),
});
