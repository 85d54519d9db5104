import { endCondition, raiseIfDue, type OutboxEntry, type RuleDevice } from '@dmp/rules';
import { recordFailure } from '@dmp/observability';
import { Inject, Injectable, Logger, type OnApplicationBootstrap } from '@nestjs/common';
import { trace } from '@opentelemetry/api';
import { CommandLedger } from '../commands/command.ledger';
import { KERNEL_CONFIG, type KernelConfig } from '../config';
import { DeviceMetadataCache } from '../enrichment/device-metadata.cache';
import { RuleSetHolder } from '../rules/rule-set.holder';
import { DeviceStateStore } from '../state/device-state.store';
import { AlarmService } from './alarm.service';
import { AlarmStore } from './alarm.store';

const BATCH = 200;
const tracer = trace.getTracer('dmp-kernel');

/**
 * The timers, swept every KERNEL_ALARM_SWEEP_MS:
 * - pending conditions whose `for` elapsed (by the wall clock: `dueAt`) with no message saying otherwise
 *   are raised — a device that sends nothing more still gets its alarm;
 * - unfinished commands whose time to live is over expire (the command ledger);
 * - outbox entries whose lease ended (a kernel crashed, a send failed and its backoff elapsed) are carried
 *   out again, in the background.
 * Any replica may sweep: compare-and-set decides which one raises, leases which one retries an entry.
 */
@Injectable()
export class AlarmScheduler implements OnApplicationBootstrap {
  private readonly log = new Logger('AlarmTimer');
  private timer?: NodeJS.Timeout;
  private running?: Promise<void>;
  private stopped = false;

  constructor(
    private readonly store: AlarmStore,
    private readonly alarms: AlarmService,
    private readonly stateStore: DeviceStateStore,
    private readonly metadata: DeviceMetadataCache,
    private readonly holder: RuleSetHolder,
    private readonly commands: CommandLedger,
    @Inject(KERNEL_CONFIG) private readonly config: KernelConfig,
  ) {}

  onApplicationBootstrap(): void {
    if (!this.config.rules.enabled) return;
    this.schedule();
  }

  /** Shutdown (EvaluationLifecycle): no new sweeps; waits for the running one. */
  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.timer);
    await this.running;
  }

  private schedule(): void {
    if (this.stopped) return;
    this.timer = setTimeout(() => {
      this.running = this.sweep()
        .catch((error: unknown) => this.log.warn(`sweep failed: ${(error as Error).message}`))
        .finally(() => {
          this.running = undefined;
          this.schedule();
        });
    }, this.config.rules.alarmSweepMs);
    this.timer.unref();
  }

  /** One sweep (also called by tests). */
  async sweep(now = Date.now()): Promise<void> {
    for (const { deviceId, ruleId } of await this.store.due(now, BATCH)) {
      if (this.stopped) return;
      await this.alarms.locks
        .run(deviceId, () => this.raiseDue(deviceId, ruleId, now))
        .catch((error: unknown) =>
          this.log.warn(`timer of ${ruleId} on ${deviceId}: ${(error as Error).message}`),
        );
    }
    if (this.stopped) return;
    // Commands whose time to live is over expire (their events go out through the outbox).
    await this.commands
      .expireDue(now, BATCH)
      .then((entries) => this.alarms.dispatch(entries))
      .catch((error: unknown) => this.log.warn(`command expiry: ${(error as Error).message}`));
    if (this.stopped) return;
    // Carried out in the background: a command waiting for its PUBACK holds neither timers nor other entries.
    // Leased for the longest attempt of any kind: the entries' kinds are known only once claimed.
    const lease = this.alarms.leaseUntil([{ kind: 'command' }, { kind: 'webhook' }] as OutboxEntry[], now);
    this.alarms.dispatch(await this.store.claimExpired(now, lease, BATCH));
  }

  private async raiseDue(deviceId: string, ruleId: string, now: number): Promise<void> {
    const activation = await this.store.get(deviceId, ruleId);
    if (!activation || activation.state !== 'pending' || activation.dueAt > now) {
      if (!activation || activation.state !== 'pending') await this.store.forgetDue(deviceId, ruleId);
      return;
    }
    const ruleSet = this.holder.current;
    const rule = ruleSet.rules.find((r) => r.id === ruleId);
    const [{ state }, metadata] = await Promise.all([
      this.stateStore.load(deviceId),
      this.metadata.get(deviceId),
    ]);
    // A rule removed (or disabled) meanwhile: its pending condition can never be raised — it is cancelled.
    if (!rule) {
      await this.alarms.commit(deviceId, [endCondition(ruleSet, activation, now, state.values)], []);
      return;
    }
    const device: RuleDevice = {
      deviceId,
      tenantId: activation.tenantId || metadata.tenantId,
      productId: activation.productId || metadata.productId,
      siteId: activation.siteId || metadata.siteId,
      tags: metadata.tags,
    };
    const due = raiseIfDue(ruleSet, rule, activation, device, state, { now });
    if (!due) return;
    // A trace of its own (no message caused it): the alarm event records it, its commands continue it.
    await tracer.startActiveSpan(
      'raise alarm',
      { attributes: { 'dmp.device.id': deviceId, 'dmp.rule.id': ruleId, 'dmp.alarm.id': activation.id } },
      async (span) => {
        try {
          await this.alarms.commit(deviceId, [due.transition], due.actions);
        } catch (error) {
          recordFailure(span, error);
          throw error;
        } finally {
          span.end();
        }
      },
    );
  }
}
