import {
  AlarmErrorCode,
  type AlarmEvent,
  DmpError,
  type NormalizedTelemetry,
  OutboxErrorCode,
} from '@dmp/contracts';
import { backoffDelay } from '@dmp/flow';
import { MetricsRegistry } from '@dmp/observability';
import {
  acknowledge,
  decideOutbox,
  outboxDeadLetter,
  outboxTarget,
  webhookOutboxResult,
  type Activation,
  type OutboxEntry,
  type OutboxResult,
  type PlannedAction,
  type PlannedCommand,
  type Transition,
} from '@dmp/rules';
import { Inject, Injectable, Logger } from '@nestjs/common';
import { trace } from '@opentelemetry/api';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Counter } from 'prom-client';
import { CommandPublisher } from '../actions/command.publisher';
import {
  AlarmEventPublisher,
  CommandEventPublisher,
  OutboxDeadLetterPublisher,
} from '../actions/rocketmq.publishers';
import { WebhookDispatcher } from '../actions/webhook.dispatcher';
import { CommandLedger } from '../commands/command.ledger';
import { KERNEL_CONFIG, type KernelConfig } from '../config';
import { RuleSetHolder } from '../rules/rule-set.holder';
import { DeviceStateStore } from '../state/device-state.store';
import { KeyedMutex } from '../state/keyed-mutex';
import { AlarmStore } from './alarm.store';

export type CommitResult =
  | { kind: 'committed'; applied: Transition[] }
  /** The message completed before: nothing was written, nothing is owed. */
  | { kind: 'duplicate' }
  /** These rules' conditions changed meanwhile: nothing was written; re-read and re-evaluate them. */
  | { kind: 'conflict'; rules: Set<string> };

/**
 * Commits condition transitions and carries out what they oblige: each transition is written to Redis
 * together with its outbox entries (the alarm event, the raise/clear commands and webhooks) in one atomic
 * compare-and-set. Alarm events are then published before the caller goes on (a device's events reach
 * RocketMQ in order); commands and webhooks — theirs and those of match actions — are carried out off the
 * evaluation path (`dispatch`): a broker that does not acknowledge a command, or a slow webhook receiver,
 * holds no evaluation. An entry is removed once done; a failed one stays in the outbox and is retried by
 * the sweeper (AlarmScheduler) with the project's backoff, and after KERNEL_OUTBOX_MAX_ATTEMPTS failures —
 * at once when refused — it leaves as a dead letter that `dmp dead-letters replay` puts back. Ids are
 * stable (event id, command id, delivery id): a repeat is recognizable downstream.
 */
@Injectable()
export class AlarmService {
  private readonly log = new Logger('Alarms');
  /** One device's conditions change one at a time in this process (messages, timer, acknowledgements). */
  readonly locks = new KeyedMutex();
  private readonly transitions: Counter<'transition' | 'severity'>;
  private readonly outcomes: Counter<'kind' | 'outcome'>;
  /** Entries being carried out in the background (awaited, bounded, at shutdown). */
  private readonly running = new Set<Promise<void>>();

  constructor(
    private readonly store: AlarmStore,
    private readonly events: AlarmEventPublisher,
    private readonly commands: CommandPublisher,
    private readonly ledger: CommandLedger,
    private readonly commandEvents: CommandEventPublisher,
    private readonly webhooks: WebhookDispatcher,
    private readonly deadLetters: OutboxDeadLetterPublisher,
    private readonly stateStore: DeviceStateStore,
    private readonly holder: RuleSetHolder,
    @Inject(KERNEL_CONFIG) private readonly config: KernelConfig,
    metrics: MetricsRegistry,
  ) {
    this.transitions = metrics.counter(
      'dmp_kernel_alarms_total',
      'Alarm transitions (pending | raised | acknowledged | cleared | cancelled), by severity',
      ['transition', 'severity'],
    );
    this.outcomes = metrics.counter(
      'dmp_kernel_outbox_total',
      'Outbox entries attempted, by kind (event | command | webhook) and outcome (done | retry | dead_letter)',
      ['kind', 'outcome'],
    );
  }

  /**
   * Writes transitions (in order) with the raise/clear actions they trigger and, for a message's
   * evaluation, the message's completion with its match actions (`message`) — in one atomic step, or not
   * at all when a rule's condition changed meanwhile. Then publishes the alarm events and dispatches the
   * commands and webhooks.
   */
  async commit(
    deviceId: string,
    transitions: readonly Transition[],
    actions: readonly PlannedAction[],
    message?: { telemetry: NormalizedTelemetry; topic: string; outbox: readonly OutboxEntry[] },
  ): Promise<CommitResult> {
    // The trace the transitions are decided in (the message's, the timer's, the acknowledgement's).
    const traceId = currentTraceId();
    const stamped = transitions.map((t) =>
      t.event && !t.event.traceId ? { ...t, event: { ...t.event, traceId } } : t,
    );
    const entries = stamped.flatMap((transition) => {
      const trigger =
        transition.transition === 'raised'
          ? 'raise'
          : transition.transition === 'cleared'
            ? 'clear'
            : undefined;
      return outboxEntries(
        transition,
        trigger ? actions.filter((a) => a.ruleId === transition.ruleId && a.trigger === trigger) : [],
      );
    });
    if (message) entries.push(...message.outbox);
    const outcome = await this.store.commit({
      deviceId,
      transitions: stamped,
      outbox: entries,
      leaseUntil: this.leaseUntil(entries),
      ...(message && {
        message: {
          stateKey: this.stateStore.key(deviceId),
          completion: this.stateStore.completion(message.telemetry, message.topic),
        },
      }),
    });
    if (outcome.kind !== 'committed') return outcome;
    for (const { transition, event } of stamped)
      if (event) this.transitions.inc({ transition, severity: event.severity });
    await Promise.all(entries.filter((e) => e.kind === 'event').map((entry) => this.carryOut(entry)));
    this.dispatch(entries.filter((e) => e.kind !== 'event'));
    return { kind: 'committed', applied: stamped };
  }

  /**
   * Carries out entries already in the outbox (leased to this replica) in the background: not awaited.
   * MQTT keeps the order in which commands are handed to it, so a device's commands leave in the order
   * they were dispatched; a retry may come after later ones.
   */
  dispatch(entries: readonly OutboxEntry[]): void {
    for (const entry of entries) {
      const running: Promise<void> = this.carryOut(entry).finally(() => this.running.delete(running));
      this.running.add(running);
    }
  }

  /** Shutdown: waits (at most `timeoutMs`) for dispatched entries; the others stay in the outbox. */
  async drain(timeoutMs = 10_000): Promise<void> {
    if (this.running.size === 0) return;
    await Promise.race([
      Promise.allSettled([...this.running]),
      new Promise((resolve) => setTimeout(resolve, timeoutMs).unref()),
    ]);
  }

  /**
   * Carries out one outbox entry and settles it (removed, retried later, or dead-lettered). Never throws.
   * Settling is retried, with the outbox's backoff, while the entry's lease lasts: an entry carried out
   * while Redis is away is not carried out again by the sweeper once Redis is back.
   */
  async carryOut(entry: OutboxEntry): Promise<void> {
    const leaseEnds = this.leaseUntil([entry]);
    const result = await this.attempt(entry);
    let settle: (() => Promise<void>) | undefined;
    for (let attempt = 1; ; attempt++) {
      try {
        settle ??= await this.settlement(entry, result);
        return await settle();
      } catch (error) {
        const delayMs = backoffDelay(attempt, {
          baseMs: this.config.rules.alarmOutboxRetryMs,
          maxMs: this.config.rules.outboxRetryMaxMs,
        });
        // Redis or the dead-letter topic unreachable: past the lease, the sweeper tries it again.
        if (Date.now() + delayMs >= leaseEnds) {
          this.log.warn(
            `outbox ${entry.kind} ${entry.id} not settled, retried later: ${(error as Error).message}`,
          );
          return;
        }
        await sleep(delayMs, undefined, { ref: false });
      }
    }
  }

  /** Counts a failed attempt and decides (once); returns the write that settles the entry. */
  private async settlement(entry: OutboxEntry, result: OutboxResult): Promise<() => Promise<void>> {
    const attempts = result.kind === 'done' ? 0 : await this.store.countFailure(entry.id);
    const decision = decideOutbox(result, attempts, {
      baseMs: this.config.rules.alarmOutboxRetryMs,
      maxMs: this.config.rules.outboxRetryMaxMs,
      maxAttempts: this.config.rules.outboxMaxAttempts,
    });
    this.outcomes.inc({ kind: entry.kind, outcome: decision.kind === 'complete' ? 'done' : decision.kind });
    if (decision.kind === 'complete') return () => this.store.complete(entry.id);
    const failure = result as Exclude<OutboxResult, { kind: 'done' }>;
    if (decision.kind === 'retry') {
      this.log.warn(
        `outbox ${entry.kind} ${entry.id} (${outboxTarget(entry)}) failed ${attempts} time(s), retried in ${decision.delayMs} ms: ${failure.code} ${failure.message}`,
      );
      return () => this.store.release(entry.id, Date.now() + decision.delayMs);
    }
    const deadLetter = outboxDeadLetter(entry, {
      ...failure,
      reason: decision.reason,
      attempts: Math.max(attempts, 1),
      instance: this.config.rules.mqttClientId,
      now: Date.now(),
    });
    return async () => {
      await this.deadLetters.publish(deadLetter);
      this.log.error(
        `outbox ${entry.kind} ${entry.id} (${outboxTarget(entry)}) dead-lettered (${decision.reason}) after ${attempts} failed attempt(s): ${failure.code} ${failure.message}`,
      );
      await this.store.complete(entry.id);
    };
  }

  private async attempt(entry: OutboxEntry): Promise<OutboxResult> {
    try {
      switch (entry.kind) {
        case 'event':
          await this.events.publish(entry.event);
          return { kind: 'done' };
        case 'command_event':
          await this.commandEvents.publish(entry.commandEvent);
          return { kind: 'done' };
        case 'command':
          return await this.sendCommand(entry.command);
        case 'webhook':
          return await new Promise<OutboxResult>((resolve) =>
            this.webhooks.enqueue(entry.webhook, (result) =>
              resolve(
                webhookOutboxResult(result, entry.webhook.deliveryId, OutboxErrorCode.WebhookEgressRefused),
              ),
            ),
          );
      }
    } catch (error) {
      const dmp = error instanceof DmpError ? error : undefined;
      return {
        kind: dmp && !dmp.retryable ? 'refused' : 'failed',
        code: dmp?.code ?? OutboxErrorCode.Failed,
        message: (error as Error).message,
      };
    }
  }

  /**
   * Sends a command through the ledger: queued (if new) → published with the rest of its time to live
   * → sent. One that is no longer queued — already sent by an attempt whose settling failed, answered,
   * or expired — is not sent again: a stale command is never delivered late.
   */
  private async sendCommand(command: PlannedCommand): Promise<OutboxResult> {
    const now = Date.now();
    const queued = await this.ledger.queue(command, currentTraceId(), now);
    this.dispatch(queued.entries);
    const record = queued.record;
    if (!record || record.state !== 'queued') return { kind: 'done' };
    if (now >= record.expiresAt) {
      this.dispatch((await this.ledger.apply(command.commandId, { kind: 'expire', now })).entries);
      return { kind: 'done' };
    }
    const traceparent = await this.commands.send(command, record.expiresAt);
    const sent = await this.ledger.apply(command.commandId, { kind: 'sent', now: Date.now(), traceparent });
    this.dispatch(sent.entries);
    return { kind: 'done' };
  }

  /** An operator acknowledges an alarm by id (admin API). */
  async acknowledge(alarmId: string, by: string): Promise<AlarmEvent> {
    const location = await this.store.locate(alarmId);
    if (!location) throw new DmpError(AlarmErrorCode.NotFound, `no open alarm ${alarmId}`, false);
    return this.locks.run(location.deviceId, async () => {
      for (let attempt = 0; attempt < 5; attempt++) {
        const activation = await this.store.get(location.deviceId, location.ruleId);
        if (!activation || activation.id !== alarmId)
          throw new DmpError(AlarmErrorCode.NotFound, `no open alarm ${alarmId} (cleared meanwhile?)`, false);
        const { state } = await this.stateStore.load(location.deviceId);
        const transition = acknowledge(this.holder.current, activation, by, Date.now(), state.values);
        if ('refused' in transition)
          throw new DmpError(
            AlarmErrorCode.NotAcknowledgeable,
            `alarm ${alarmId}: ${transition.refused}`,
            false,
          );
        const result = await this.commit(location.deviceId, [transition], []);
        if (result.kind === 'committed') return result.applied[0].event!;
      }
      throw new DmpError(AlarmErrorCode.Conflict, `alarm ${alarmId} kept changing; try again`, true);
    });
  }

  /** Open alarms (pending, active, acknowledged) of a device. */
  async listDevice(deviceId: string): Promise<Activation[]> {
    const all = await this.store.load(deviceId);
    return [...all.values()].filter((a) => a.alarm);
  }

  /**
   * Until when entries carried out now are leased: the sweeper leaves them alone meanwhile, so the lease
   * outlasts the longest attempt (a command's PUBACK timeout, a webhook with all its retries) — an entry
   * is never attempted twice at once.
   */
  leaseUntil(outbox: readonly OutboxEntry[], now = Date.now()): number {
    const { alarmOutboxRetryMs, commandTimeoutMs } = this.config.rules;
    const longest = Math.max(
      outbox.some((e) => e.kind === 'command') ? commandTimeoutMs : 0,
      outbox.some((e) => e.kind === 'webhook') ? this.webhooks.maxDeliveryMs : 0,
    );
    return now + alarmOutboxRetryMs + longest;
  }
}

/** The active span's trace id, '' outside a trace (or when it is the invalid all-zero id). */
function currentTraceId(): string {
  const id = trace.getActiveSpan()?.spanContext().traceId ?? '';
  return /^0+$/.test(id) ? '' : id;
}

/** The outbox entries of a transition: its alarm event and the actions it triggers. */
export function outboxEntries(transition: Transition, actions: readonly PlannedAction[]): OutboxEntry[] {
  const entries: OutboxEntry[] = [];
  if (transition.event)
    entries.push({ id: `evt:${transition.event.eventId}`, kind: 'event', event: transition.event });
  return [...entries, ...actionEntries(actions)];
}

/** The outbox entries of actions: their commands and webhooks (routes are sent by the evaluation itself). */
export function actionEntries(actions: readonly PlannedAction[]): OutboxEntry[] {
  const entries: OutboxEntry[] = [];
  for (const action of actions) {
    if (action.kind === 'command')
      entries.push({ id: `cmd:${action.commandId}`, kind: 'command', command: action });
    else if (action.kind === 'webhook')
      entries.push({ id: `whk:${action.deliveryId}`, kind: 'webhook', webhook: action });
  }
  return entries;
}
