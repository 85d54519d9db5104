import { ClickHouseRepository, stringLiteral } from '@dmp/clickhouse';
import { clickhouseSection, loadConfig } from '@dmp/config';
import { COMMAND_EVENTS_TABLE, COMMAND_ID_PATTERN, type CommandRecord } from '@dmp/contracts';
import type { Command } from 'commander';
import { z } from 'zod';

/**
 * `dmp commands list <device> | show <command id> | resend <command id>`: the command ledger through
 * dmp-kernel's admin API (DMP_KERNEL_URL, ADMIN_TOKEN); `show` adds the command's transitions from
 * ClickHouse (`command_events`) when it is reachable.
 */
const apiSection = z
  .object({
    DMP_KERNEL_URL: z.url().default('http://127.0.0.1:3002'),
    ADMIN_TOKEN: z.string().optional(),
  })
  .transform((e) => ({ url: e.DMP_KERNEL_URL, token: e.ADMIN_TOKEN }));

interface ApiOptions {
  url?: string;
  token?: string;
  json?: boolean;
}

export interface CommandEventLine {
  version: number;
  transition: string;
  state: string;
  ts_ms: number;
  detail: string;
}

async function api<T>(options: ApiOptions, method: string, path: string): Promise<T> {
  const env = loadConfig({ api: apiSection }).api;
  const token = options.token ?? env.token;
  if (!token) throw new Error('the admin token is needed: set ADMIN_TOKEN or pass --token');
  const response = await fetch(`${(options.url ?? env.url).replace(/\/+$/, '')}${path}`, {
    method,
    headers: { authorization: `Bearer ${token}` },
  });
  const body = (await response.json().catch(() => ({}))) as T & { code?: string; message?: string };
  if (!response.ok)
    throw new Error(`${method} ${path}: ${response.status} ${body.code ?? ''} ${body.message ?? ''}`.trim());
  return body;
}

const at = (ms: number) => (ms ? new Date(ms).toISOString() : '-');

/** One line per command: id, state, name, device, rule, queued, sends/resends, the reply. */
export function formatCommandList(commands: readonly CommandRecord[]): string {
  if (commands.length === 0) return 'no commands';
  const rows = commands.map((c) => [
    c.commandId,
    c.state,
    c.name,
    c.ruleId || '-',
    at(c.queuedAt),
    `${c.sends}/${c.resends}`,
    c.reply ? [c.reply.status, c.reply.code, c.reply.message].filter(Boolean).join(': ') : '',
  ]);
  const head = ['COMMAND', 'STATE', 'NAME', 'RULE', 'QUEUED', 'SENT/RESENT', 'REPLY'];
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
  return [head, ...rows]
    .map((r) =>
      r
        .map((cell, i) => cell.padEnd(widths[i]))
        .join('  ')
        .trimEnd(),
    )
    .join('\n');
}

/** A command and, when known, its transitions. */
export function formatCommand(c: CommandRecord, events: readonly CommandEventLine[] | undefined): string {
  const lines = [
    `command   ${c.commandId}`,
    `state     ${c.state}`,
    `device    ${c.deviceId}`,
    `rule      ${c.ruleId || '-'}`,
    `name      ${c.name} ${c.paramsJson}`,
    `queued    ${at(c.queuedAt)}   sent ${at(c.sentAt)}   expires ${at(c.expiresAt)}   finished ${at(c.finishedAt)}`,
    `sends     ${c.sends} (resent ${c.resends} time(s))`,
    `reply     ${c.reply ? `${[c.reply.status, c.reply.code, c.reply.message].filter(Boolean).join(': ')}${c.reply.resultJson ? ` ${c.reply.resultJson}` : ''} at ${at(c.reply.at)}` : '-'}`,
    `trace     ${c.traceId || '-'}`,
  ];
  if (events) {
    lines.push('history');
    for (const e of events)
      lines.push(
        `  v${e.version}  ${at(e.ts_ms)}  ${e.transition.padEnd(10)} → ${e.state}${e.detail ? `  (${e.detail})` : ''}`,
      );
  }
  return lines.join('\n');
}

/** The command's transitions in ClickHouse, or undefined when ClickHouse is not reachable. */
async function history(commandId: string, deviceId: string): Promise<CommandEventLine[] | undefined> {
  const clickhouse = new ClickHouseRepository(loadConfig({ clickhouse: clickhouseSection }).clickhouse);
  try {
    const rows = await clickhouse.query<{
      version: string;
      transition: string;
      state: string;
      ts_ms: string;
      detail: string;
    }>(
      `SELECT version, transition, state, ts_ms, detail FROM ${COMMAND_EVENTS_TABLE} FINAL
       WHERE device_id = ${stringLiteral(deviceId)} AND command_id = ${stringLiteral(commandId)} ORDER BY version`,
    );
    return rows.map((r) => ({ ...r, version: Number(r.version), ts_ms: Number(r.ts_ms) }));
  } catch {
    return undefined;
  } finally {
    await clickhouse.close();
  }
}

const commandId = (id: string) => {
  if (!COMMAND_ID_PATTERN.test(id)) throw new Error(`not a command id: ${id}`);
  return id;
};

export function registerCommandsCommand(program: Command): void {
  const commands = program
    .command('commands')
    .description('the command ledger: what linkage commands were sent and what the devices answered');
  const api_ = (cmd: Command) =>
    cmd
      .option('--url <url>', "dmp-kernel's base URL (default DMP_KERNEL_URL or http://127.0.0.1:3002)")
      .option('--token <token>', 'admin token (default ADMIN_TOKEN)')
      .option('--json', 'print JSON');

  api_(commands.command('list <device>').description("a device's latest commands, newest first"))
    .option('--limit <n>', 'how many', '20')
    .action(async (device: string, options: ApiOptions & { limit: string }) => {
      const { commands: list } = await api<{ commands: CommandRecord[] }>(
        options,
        'GET',
        `/commands?deviceId=${encodeURIComponent(device)}&limit=${encodeURIComponent(options.limit)}`,
      );
      console.log(options.json ? JSON.stringify(list, null, 2) : formatCommandList(list));
    });

  api_(
    commands.command('show <commandId>').description('one command, with its transitions from ClickHouse'),
  ).action(async (id: string, options: ApiOptions) => {
    const record = await api<CommandRecord>(options, 'GET', `/commands/${commandId(id)}`);
    const events = await history(record.commandId, record.deviceId);
    console.log(
      options.json
        ? JSON.stringify({ ...record, events: events ?? null }, null, 2)
        : formatCommand(record, events),
    );
  });

  api_(
    commands
      .command('resend <commandId>')
      .description(
        'send a failed or expired command again, under the same id (bounded: KERNEL_COMMAND_MAX_RESENDS)',
      ),
  ).action(async (id: string, options: ApiOptions) => {
    const record = await api<CommandRecord>(options, 'POST', `/commands/${commandId(id)}/resend`);
    console.log(
      options.json
        ? JSON.stringify(record, null, 2)
        : `command ${record.commandId} queued again (resend ${record.resends})`,
    );
  });
}
