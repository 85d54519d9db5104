import { DmpError, type AlarmEvent } from '@dmp/contracts';
import { MetricsRegistry } from '@dmp/observability';
import { Inject, Injectable, Logger } from '@nestjs/common';
import type { Counter } from 'prom-client';
import { CommandPublisher } from '../actions/command.publisher';
import { AlarmEventPublisher } from '../actions/rocketmq.publishers';
import { WebhookDispatcher } from '../actions/webhook.dispatcher';
import { KERNEL_CONFIG, type KernelConfig } from '../config';
import { DeviceStateStore } from '../evaluation/device-state.store';
import { KeyedMutex } from '../evaluation/keyed-mutex';
import { RuleSetHolder } from '../rules/rule-set.holder';
import { acknowledge, type Activation, type PlannedAction, type Transition } from '../rules/engine';
import { AlarmStore, type OutboxEntry } from './alarm.store';

export const AlarmErrorCode = {
  /** Another replica changed the condition at the same time, again and again: retried later. */
  Conflict: 'DMP_ERR_ALARM_CONFLICT',
  NotFound: 'DMP_ERR_ALARM_NOT_FOUND',
  NotAcknowledgeable: 'DMP_ERR_ALARM_NOT_ACKNOWLEDGEABLE',
} as const;

export interface CommitResult {
  applied: Transition[];
  /** Rules whose transition lost a compare-and-set (their condition changed meanwhile). */
  conflicts: Set<string>;
}

/**
 * Commits condition transitions and carries out what they oblige: each transition is written to Redis
 * together with its outbox entries (the alarm event, the raise/clear commands and webhooks) in one atomic
 * compare-and-set; then the entries are carried out at once, each removed when done. A failed entry is
 * left in the outbox and retried by the sweeper (AlarmScheduler) — never lost, possibly repeated (ids are
 * stable, consumers deduplicate).
 */
@Injectable()
export class AlarmService {
  private readonly log = new Logger('Alarms');
  /** One device's conditions change one at a time in this process (messages, timer, acknowledgements). */
  readonly locks = new KeyedMutex();
  private readonly transitions: Counter<'transition' | 'severity'>;

  constructor(
    private readonly store: AlarmStore,
    private readonly events: AlarmEventPublisher,
    private readonly commands: CommandPublisher,
    private readonly webhooks: WebhookDispatcher,
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
  }

  /**
   * Writes transitions (in order) with the raise/clear actions they trigger; carries out the outbox
   * entries of those that were applied. A rule whose write conflicts is skipped (with its later
   * transitions) and reported, for the caller to re-read and re-evaluate it.
   */
  async commit(transitions: readonly Transition[], actions: readonly PlannedAction[]): Promise<CommitResult> {
    const applied: Transition[] = [];
    const conflicts = new Set<string>();
    const entries: OutboxEntry[] = [];
    for (const transition of transitions) {
      if (conflicts.has(transition.ruleId)) continue;
      const trigger =
        transition.transition === 'raised'
          ? 'raise'
          : transition.transition === 'cleared'
            ? 'clear'
            : undefined;
      const outbox = outboxEntries(
        transition,
        trigger ? actions.filter((a) => a.ruleId === transition.ruleId && a.trigger === trigger) : [],
      );
      if (await this.store.apply(transition, outbox, Date.now() + this.leaseMs(outbox))) {
        applied.push(transition);
        entries.push(...outbox);
        if (transition.event)
          this.transitions.inc({ transition: transition.transition, severity: transition.event.severity });
      } else conflicts.add(transition.ruleId);
    }
    await Promise.all(entries.map((entry) => this.carryOut(entry)));
    return { applied, conflicts };
  }

  /** Carries out one outbox entry; on failure it stays for the sweeper. Never throws. */
  async carryOut(entry: OutboxEntry): Promise<void> {
    try {
      switch (entry.kind) {
        case 'event':
          await this.events.publish(entry.event);
          break;
        case 'command':
          await this.commands.send(entry.command);
          break;
        case 'webhook':
          // Done when the delivery ended; a delivery dropped by a full queue is tried again later.
          this.webhooks.enqueue(entry.webhook, (result) => {
            const next =
              result === 'dropped'
                ? this.store.release(entry.id, Date.now() + this.config.rules.alarmOutboxRetryMs)
                : this.store.complete(entry.id);
            next.catch((error: unknown) => this.log.warn(`outbox ${entry.id}: ${(error as Error).message}`));
          });
          return;
      }
      await this.store.complete(entry.id);
    } catch (error) {
      this.log.warn(
        `outbox ${entry.kind} ${entry.id} not done yet, retried later: ${(error as Error).message}`,
      );
      await this.store
        .release(entry.id, Date.now() + this.config.rules.alarmOutboxRetryMs)
        .catch(() => undefined);
    }
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
        const { applied } = await this.commit([transition], []);
        if (applied.length) return transition.event!;
      }
      throw new DmpError(AlarmErrorCode.Conflict, `alarm ${alarmId} kept changing; try again`, true);
    });
  }

  /** Open alarms (pending, active, acknowledged) of a device. */
  async listDevice(deviceId: string): Promise<Activation[]> {
    const all = await this.store.load(deviceId);
    return [...all.values()].filter((a) => a.alarm);
  }

  private leaseMs(outbox: readonly OutboxEntry[]): number {
    const base = this.config.rules.alarmOutboxRetryMs;
    return outbox.some((e) => e.kind === 'webhook') ? base + this.webhooks.maxDeliveryMs : base;
  }
}

/** The outbox entries of a transition: its alarm event and the actions it triggers. */
export function outboxEntries(transition: Transition, actions: readonly PlannedAction[]): OutboxEntry[] {
  const entries: OutboxEntry[] = [];
  if (transition.event)
    entries.push({ id: `evt:${transition.event.eventId}`, kind: 'event', event: transition.event });
  for (const action of actions) {
    if (action.kind === 'command')
      entries.push({ id: `cmd:${action.commandId}`, kind: 'command', command: action });
    else if (action.kind === 'webhook')
      entries.push({ id: `whk:${action.deliveryId}`, kind: 'webhook', webhook: action });
  }
  return entries;
}
