/**
 * The data set docs/analysts.md shows and the SQL blocks of that page, for the tests that run them
 * (clickhouse-current on each engine, scale on a cluster), and a way to store it as dmp-data does.
 */
import { ClickHouseRepository } from '@dmp/clickhouse';
import {
  cleanTelemetry,
  type AlarmEvent,
  type CommandEvent,
  type CommandRecord,
  type CommandTransition,
  type NormalizedTelemetry,
} from '@dmp/contracts';
import type { RocketMqMessage } from '@dmp/messaging';
import { MetricsRegistry } from '@dmp/observability';
import { REPO_ROOT } from '@dmp/testing';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { AlarmWriter } from '../../apps/dmp-data/src/alarms/alarm.writer';
import { CommandWriter } from '../../apps/dmp-data/src/commands/command.writer';
import {
  toCleaningDeadLetter,
  toCleaningDeadLetterBatch,
  type CleaningDeadLetter,
} from '../../apps/dmp-data/src/cleaning/cleaning-dead-letter';
import type { DataConfig } from '../../apps/dmp-data/src/config';
import { toDeadLetterRows } from '../../apps/dmp-data/src/dead-letters/dead-letter-row';
import { DeadLetterWriter } from '../../apps/dmp-data/src/dead-letters/dead-letter.writer';
import { TelemetryBatchWriter } from '../../apps/dmp-data/src/storage/telemetry-batch-writer';
import { toTelemetryRows } from '@dmp/clickhouse';

// ---------------------------------------------------------------------------------------------
// The data set: the one docs/analysts.md shows (3 devices, 30 messages 20 s apart on 2026-11-21,
// cleaning's four examples), plus 2 minutes of recent data (the aggregator's other source, and the
// back-test's history). Millisecond parts in every timestamp.
// ---------------------------------------------------------------------------------------------

const DEVICES = ['dev-001', 'dev-002', 'dev-003'];
const SITES = ['site-a', 'site-a', 'site-b'];
export const HISTORY_START = Date.UTC(2026, 10, 21, 10, 0, 0);
export const RECENT_START = Math.floor((Date.now() - 30 * 60_000) / 60_000) * 60_000;
/** The recent temperatures of dev-001 (+1 °C per further device), 10 s apart. */
const RECENT_TEMPS = [20, 22, 24, 26, 27, 26, 23, 21, 20, 22, 26, 25];

export type Entry = Omit<NormalizedTelemetry, 'metrics'> & { metrics: Record<string, unknown> };

function entry(
  device: number,
  messageId: string,
  kind: Entry['kind'],
  ts: number,
  metrics: Entry['metrics'],
): Entry {
  return {
    deviceId: DEVICES[device],
    messageId,
    kind,
    ts,
    metrics,
    receivedAt: ts + 150,
    tenantId: 'tenant-1',
    productId: 'thermo',
    siteId: SITES[device],
  };
}

export function analystsDataSet(): Entry[] {
  const entries: Entry[] = [];
  DEVICES.forEach((id, d) => {
    for (let n = 0; n < 30; n++) {
      const snapshot = n % 10 === 0;
      entries.push(
        entry(
          d,
          `${id}-${String(n).padStart(4, '0')}`,
          snapshot ? 'snapshot' : 'telemetry',
          HISTORY_START + n * 20_000 + d * 1_000 + ((n * 37) % 1000),
          {
            temp: Math.round((20 + d + 2 * Math.sin(n / 4)) * 10) / 10,
            hum: 40 + (n % 7),
            door: n % 8 === 0,
            ...(snapshot ? { mode: n < 20 ? 'eco' : 'boost', fw: '1.4.2' } : {}),
          },
        ),
      );
    }
    RECENT_TEMPS.forEach((temp, n) =>
      entries.push(
        entry(
          d,
          `${id}-r${String(n).padStart(3, '0')}`,
          'telemetry',
          RECENT_START + n * 10_000 + d * 1_000 + 7 * n,
          {
            temp: temp + d,
            door: n === 5,
          },
        ),
      ),
    );
  });
  const late = HISTORY_START + 9 * 60_000;
  entries.push(
    entry(0, 'dev-001-0031', 'telemetry', late, { temp: Infinity, hum: 41, door: false }),
    entry(1, 'dev-002-0031', 'telemetry', late + 1_000, { temp: 21.5, hum: 130, door: false }),
    entry(1, 'dev-002-0032', 'telemetry', late + 21_000, { temp: -Infinity, hum: -3, door: true }),
    {
      ...entry(2, 'dev-003-0031', 'telemetry', Date.now() + 86_400_000, { temp: 22 }),
      receivedAt: late + 60_000,
    },
  );
  return entries;
}

export const docsSql = async (): Promise<string[]> => {
  const text = await readFile(join(REPO_ROOT, 'docs/analysts.md'), 'utf8');
  return [...text.matchAll(/^[ \t]*```sql\n([\s\S]*?)^[ \t]*```/gm)].map((m) => m[1].trim());
};

/** `-- ClickHouse 20.5+ …` as a block's first line: the release it needs. */
export const docsBlockNeeds = (sql: string) => {
  const match = /^--\s*ClickHouse (\d+)\.(\d+)\+/.exec(sql);
  return match ? { major: Number(match[1]), minor: Number(match[2]) } : undefined;
};

/** An alarm of dev-001: pending (version 1), then raised (version 2). */
export function analystsAlarmEvents(): [AlarmEvent, AlarmEvent] {
  const base: AlarmEvent = {
    eventId: 'alm-1:1',
    alarmId: 'alm-1',
    version: 1,
    transition: 'pending',
    state: 'pending',
    deviceId: 'dev-001',
    ruleId: 'temperature-high',
    ruleName: 'Temperature high',
    severity: 'major',
    message: 'Temperature 31 °C on dev-001',
    tenantId: 'tenant-1',
    productId: 'thermo',
    siteId: 'site-a',
    ts: RECENT_START,
    startedAt: RECENT_START,
    raisedAt: 0,
    acknowledgedAt: 0,
    acknowledgedBy: '',
    clearedAt: 0,
    messageId: 'dev-001-r003',
    values: { temp: 26, door: false },
    rulesetVersion: 'v1',
    inputs: { 'state.latest.temperature': 31 },
    ruleText: '- id: temperature-high',
    traceId: '',
  };
  const raised: AlarmEvent = {
    ...base,
    eventId: 'alm-1:2',
    version: 2,
    transition: 'raised',
    state: 'active',
    ts: RECENT_START + 30_000,
    raisedAt: RECENT_START + 30_000,
  };
  return [base, raised];
}

/**
 * Two commands of the rule `temperature-high`: `cmd-1` to dev-001 answered ok (queued, sent, replied),
 * `cmd-2` to dev-002 never answered in time (queued, sent, expired) and answered late (late_reply).
 */
export function analystsCommandEvents(): CommandEvent[] {
  const t = RECENT_START + 30_000;
  const record = (id: string, deviceId: string): CommandRecord => ({
    commandId: id,
    deviceId,
    ruleId: 'temperature-high',
    name: 'fan.set',
    paramsJson: '{"speed":3}',
    state: 'queued',
    version: 1,
    ttlMs: 30_000,
    queuedAt: t,
    sentAt: 0,
    expiresAt: t + 30_000,
    finishedAt: 0,
    sends: 0,
    resends: 0,
    reply: null,
    traceId: '',
    traceparent: '',
  });
  const event = (c: CommandRecord, transition: CommandTransition, ts: number, detail = ''): CommandEvent => ({
    eventId: `${c.commandId}:${c.version}`,
    transition,
    ts,
    command: c,
    detail,
  });
  const one = record('cmd-1', 'dev-001');
  const oneSent = { ...one, state: 'sent' as const, version: 2, sentAt: t + 5, sends: 1 };
  const oneReplied = {
    ...oneSent,
    state: 'replied' as const,
    version: 3,
    finishedAt: t + 180,
    reply: { status: 'ok' as const, code: '', message: '', resultJson: '{"speed":3}', at: t + 180 },
  };
  const two = record('cmd-2', 'dev-002');
  const twoSent = { ...two, state: 'sent' as const, version: 2, sentAt: t + 6, sends: 1 };
  const twoExpired = { ...twoSent, state: 'expired' as const, version: 3, finishedAt: t + 30_000 };
  const twoLate = { ...twoExpired, version: 4 };
  return [
    event(one, 'queued', t),
    event(oneSent, 'sent', t + 5),
    event(oneReplied, 'replied', t + 180, 'ok'),
    event(two, 'queued', t),
    event(twoSent, 'sent', t + 6),
    event(twoExpired, 'expired', t + 30_000),
    event(twoLate, 'late_reply', t + 45_000, 'ok'),
  ];
}

/**
 * Stores the data set as dmp-data would: cleaned (rejections and removed metrics become dead letters,
 * stored by the dead-letter writer), telemetry through the batch writer (with its aggregation marks),
 * the alarm's two events. `config` needs DATA_CLEAN_METRIC_RANGES `{"hum": [0, 100]}` and
 * DATA_CLEAN_MAX_AGE_MS 0 for the page's four cleaning examples. Returns what was stored.
 */
export async function storeAnalystsData(
  repository: ClickHouseRepository,
  config: DataConfig,
  now = Date.now(),
): Promise<{ stored: NormalizedTelemetry[]; letters: CleaningDeadLetter[] }> {
  const stored: NormalizedTelemetry[] = [];
  const letters: CleaningDeadLetter[] = [];
  for (const e of analystsDataSet()) {
    const result = cleanTelemetry(e, config.cleaning, now);
    if (result.kind === 'accepted') stored.push(result.telemetry);
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
  const telemetry = new TelemetryBatchWriter(repository, new MetricsRegistry('analysts-data'), config);
  await Promise.all(stored.map((m) => telemetry.store(toTelemetryRows(m))));
  await telemetry.close();
  const alarms = new AlarmWriter(repository, config.alarms);
  for (const event of analystsAlarmEvents()) await alarms.store(event);
  await alarms.close();
  const commands = new CommandWriter(repository, config.commands);
  await Promise.all(analystsCommandEvents().map((event) => commands.store(event)));
  await commands.close();
  const batch = toCleaningDeadLetterBatch('dmp_dead_letter', 'dmp_data', letters);
  const message: RocketMqMessage = {
    topic: batch.topic,
    messageId: `rmq-batch-${repository.database}`,
    body: batch.body,
    keys: batch.keys ?? [],
    properties: batch.properties ?? {},
    deliveryAttempt: 1,
    bornTimestamp: new Date(now),
  };
  const deadLetters = new DeadLetterWriter(repository, config.deadLetters);
  await Promise.all(toDeadLetterRows(message, now).map((row) => deadLetters.store(row)));
  await deadLetters.close();
  return { stored, letters };
}
