import { CommandErrorCode, DmpError, type CommandRecord } from '@dmp/contracts';
import { MetricsRegistry } from '@dmp/observability';
import {
  decideCommand,
  type CommandDecision,
  type CommandFact,
  type OutboxEntry,
  type PlannedCommand,
} from '@dmp/rules';
import { Inject, Injectable } from '@nestjs/common';
import type { Counter } from 'prom-client';
import { KERNEL_CONFIG, type KernelConfig } from '../config';
import { CommandStore } from './command.store';

/** What a fact did to a command: the decision, the record after it, and the outbox entries to carry out. */
export interface LedgerResult {
  decision: CommandDecision;
  record: CommandRecord | undefined;
  /** Written to the outbox with the transition, leased to the caller: dispatch them (AlarmService). */
  entries: OutboxEntry[];
}

const ATTEMPTS = 5;

/**
 * The command ledger: applies facts (queued, sent, a reply, expiry, a resend) to a command's record with
 * the pure `decideCommand` (@dmp/rules) and writes the result by compare-and-set (CommandStore), together
 * with the outbox entry of its event for `dmp_command` — the caller dispatches the entries it gets back,
 * and the outbox sweeper retries any that fail. A conflict (another replica, a reply racing the sweeper)
 * re-reads and decides again.
 */
@Injectable()
export class CommandLedger {
  private readonly transitions: Counter<'transition'>;

  constructor(
    private readonly store: CommandStore,
    @Inject(KERNEL_CONFIG) private readonly config: KernelConfig,
    metrics: MetricsRegistry,
  ) {
    this.transitions = metrics.counter(
      'dmp_kernel_command_transitions_total',
      'Command ledger transitions (queued | sent | replied | failed | expired | resent | late_reply)',
      ['transition'],
    );
  }

  get(commandId: string): Promise<CommandRecord | undefined> {
    return this.store.get(commandId);
  }

  listDevice(deviceId: string, limit = 50): Promise<CommandRecord[]> {
    return this.store.listDevice(deviceId, limit);
  }

  /** The command as planned by its rule, queued in the ledger if it is not there yet. */
  queue(command: PlannedCommand, traceId: string, now = Date.now()): Promise<LedgerResult> {
    return this.apply(command.commandId, {
      kind: 'queue',
      command,
      ttlMs: command.ttlMs ?? this.config.rules.commands.ttlMs,
      traceId,
      now,
    });
  }

  /**
   * Decides `fact` on the command's current record and writes the outcome; retried on conflicts.
   * `extra` adds outbox entries that must be written in the same step (a resend's command).
   */
  async apply(
    commandId: string,
    fact: CommandFact,
    extra: (record: CommandRecord) => OutboxEntry[] = () => [],
  ): Promise<LedgerResult> {
    for (let attempt = 0; attempt < ATTEMPTS; attempt++) {
      const current = await this.store.get(commandId);
      const decision = decideCommand(current, fact);
      if (decision.kind !== 'apply') return { decision, record: current, entries: [] };
      const entries: OutboxEntry[] = [
        { id: `cev:${decision.event.eventId}`, kind: 'command_event', commandEvent: decision.event },
        ...extra(decision.record),
      ];
      const leaseUntil =
        Date.now() + this.config.rules.alarmOutboxRetryMs + this.config.rules.commandTimeoutMs;
      if (await this.store.apply(decision.record, current?.version ?? 0, entries, leaseUntil)) {
        this.transitions.inc({ transition: decision.event.transition });
        return { decision, record: decision.record, entries };
      }
    }
    throw new DmpError(CommandErrorCode.Conflict, `command ${commandId} kept changing; try again`, true);
  }

  /**
   * The sweeper's part: expires unfinished commands whose time to live is over; returns the outbox
   * entries (their events) to dispatch.
   */
  async expireDue(now: number, limit: number): Promise<OutboxEntry[]> {
    const entries: OutboxEntry[] = [];
    for (const commandId of await this.store.due(now, limit)) {
      const result = await this.apply(commandId, { kind: 'expire', now });
      if (result.decision.kind === 'apply') entries.push(...result.entries);
      else if (result.decision.reason !== 'not_due') await this.store.forgetDue(commandId);
    }
    return entries;
  }
}

/** The command a record describes, as the outbox sends it (a resend sends exactly this, same id). */
export function plannedFromRecord(record: CommandRecord): PlannedCommand {
  return {
    kind: 'command',
    ruleId: record.ruleId,
    trigger: 'raise',
    deviceId: record.deviceId,
    commandId: record.commandId,
    name: record.name,
    params: JSON.parse(record.paramsJson) as unknown,
    ts: record.queuedAt,
    ttlMs: record.ttlMs,
  };
}
