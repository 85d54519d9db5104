import {
  CleanCode,
  type CleaningLimits,
  describeRemovals,
  DmpError,
  MessagingErrorCode,
  type NormalizedTelemetry,
} from '@dmp/contracts';
import {
  processTelemetryEntry,
  telemetryEntriesOf,
  type RocketMqMessage,
  type TelemetryEntry,
} from '@dmp/messaging';
import { MetricsRegistry, recordFailure } from '@dmp/observability';
import { evaluateMessage, type DeviceState, type RuleDevice, type RuleSet } from '@dmp/rules';
import { Inject, Injectable, Logger } from '@nestjs/common';
import { context, trace } from '@opentelemetry/api';
import type { Counter, Histogram } from 'prom-client';
import { RoutePublisher } from '../actions/rocketmq.publishers';
import { AlarmService } from '../alarms/alarm.service';
import { AlarmStore } from '../alarms/alarm.store';
import { KERNEL_CONFIG, type KernelConfig } from '../config';
import { DeviceMetadataCache } from '../enrichment/device-metadata.cache';
import { RuleSetHolder } from '../rules/rule-set.holder';
import { DeviceStateStore } from '../state/device-state.store';
import { groupByDevice } from './device-groups';
import {
  type CommitPlan,
  decideAfterCommit,
  decideStart,
  narrowTo,
  planCommit,
  summarize,
} from './rule-decisions';
import { ruleInputOf } from './rule-input';

const SKIP_LOG_INTERVAL_MS = 10_000;
const EVAL_BUCKETS = [0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.05];
const tracer = trace.getTracer('dmp-kernel');

/**
 * Evaluates the rules for one telemetry message taken from the durable stream (the kernel's own consumer
 * group of the telemetry topics), then returns — and the consumer acknowledges it — only once everything
 * it caused is durable: its routed copies in RocketMQ, then in one atomic step its condition transitions
 * with their outbox entries (alarm events, raise/clear commands and webhooks), the device's state, the
 * message recorded as completed and the outbox entries of its match commands and webhooks, then its alarm
 * events in RocketMQ. Commands and webhooks are carried out from the outbox off the evaluation path: a
 * device whose command the broker does not acknowledge holds neither its pack nor other devices. A
 * failure before that throws, and RocketMQ redelivers the message (in order, per device).
 *
 * Idempotent per device message: a redelivered pack skips each device's messages up to its last completed
 * one, and a copy in another RocketMQ message is skipped while among the device's recently completed ones
 * (`isEvaluated`); a message that failed halfway wrote nothing but its routed copies and is evaluated
 * again. Exactly one rule set evaluates a message: the one running when its evaluation starts (taken once).
 *
 * Rules see what storage keeps: each device message goes through the same cleaning as in dmp-data
 * (`cleanTelemetry`, DATA_CLEAN_* limits) first. A message storage refuses (stamped too far ahead or too
 * old, no metric left) is not evaluated and leaves the device's state alone; a metric storage removes is
 * not seen. Both are counted in `dmp_kernel_rule_skipped_total{reason}` and logged (one line per 10 s).
 */
@Injectable()
export class RuleProcessor {
  private readonly evaluations: Counter<'rule' | 'result'>;
  private readonly errors: Counter<'rule' | 'code'>;
  private readonly evalSeconds: Histogram;
  private readonly duplicates: Counter;
  private readonly skipped: Counter<'reason'>;
  private readonly group: string;
  private readonly limits: CleaningLimits;
  private readonly log = new Logger('RuleProcessor');
  private lastSkipLogAt = 0;
  private unloggedSkips = 0;

  constructor(
    private readonly holder: RuleSetHolder,
    private readonly stateStore: DeviceStateStore,
    private readonly alarmStore: AlarmStore,
    private readonly alarms: AlarmService,
    private readonly metadata: DeviceMetadataCache,
    private readonly routes: RoutePublisher,
    metrics: MetricsRegistry,
    @Inject(KERNEL_CONFIG) config: KernelConfig,
  ) {
    this.group = config.rules.group;
    this.limits = config.cleaning;
    this.evaluations = metrics.counter(
      'dmp_kernel_rule_evaluations_total',
      'Rule conditions evaluated, by rule and result (match | no_match | no_data | error)',
      ['rule', 'result'],
    );
    this.errors = metrics.counter(
      'dmp_kernel_rule_errors_total',
      'Rule conditions (when or clear) that failed on a message, by rule and code (DMP_ERR_RULE_BUDGET: stopped by the evaluation budget; DMP_ERR_RULE_EVALUATION: any other error)',
      ['rule', 'code'],
    );
    this.evalSeconds = metrics.histogram(
      'dmp_kernel_rule_eval_seconds',
      'Time to evaluate every rule of the set against one message (CPU only, no I/O)',
      [],
      EVAL_BUCKETS,
    );
    this.duplicates = metrics.counter(
      'dmp_kernel_rule_duplicates_total',
      'Redelivered device messages whose evaluation had already completed (skipped)',
    );
    this.skipped = metrics.counter(
      'dmp_kernel_rule_skipped_total',
      'Telemetry rules did not see because storage refuses it (the DATA_CLEAN_* limits dmp-data applies), by DMP_ERR_CLEAN_* reason: messages for whole-message reasons, metric values for per-metric ones',
      ['reason'],
    );
    // Every reason from the start: rate() and alerts see a series before the first refused message.
    for (const reason of Object.values(CleanCode)) this.skipped.inc({ reason }, 0);
  }

  /**
   * Evaluates each device message of a telemetry message (a pack's entries, or the single one): a
   * device's messages one after the other, devices concurrently, each in its own trace. Invalid
   * entries are refused (non-retryable) once the others are done.
   */
  async handle(message: RocketMqMessage): Promise<void> {
    const ruleSet = this.holder.current; // this message's rule set, whatever happens meanwhile
    let entries: TelemetryEntry[];
    try {
      entries = telemetryEntriesOf(message);
    } catch (error) {
      throw new DmpError(MessagingErrorCode.InvalidMessage, (error as Error).message, false);
    }
    const invalid: string[] = [];
    const valid: { entry: TelemetryEntry; deviceId: string; telemetry: NormalizedTelemetry }[] = [];
    const now = Date.now();
    entries.forEach((entry, index) => {
      const input = ruleInputOf(entry.telemetry, this.limits, now);
      switch (input.kind) {
        case 'evaluate':
          valid.push({ entry, deviceId: input.telemetry.deviceId, telemetry: input.telemetry });
          if (input.removed.length > 0) {
            for (const removal of input.removed) this.skipped.inc({ reason: removal.code });
            this.logSkipped(message, entry, `evaluated without ${describeRemovals(input.removed)}`);
          }
          return;
        case 'skip':
          this.skipped.inc({ reason: input.code });
          this.logSkipped(message, entry, `not evaluated (${input.code}): ${input.detail}`);
          return;
        case 'invalid':
          invalid.push(entries.length === 1 ? input.problem : `entry ${index}: ${input.problem}`);
      }
    });
    await Promise.all(
      groupByDevice(valid).map(async (indexes) => {
        const ids = indexes.map((i) => valid[i].telemetry.messageId);
        for (const [position, { entry, deviceId, telemetry }] of indexes.map((i) => valid[i]).entries())
          await processTelemetryEntry(message, entry, this.group, () =>
            this.alarms.locks.run(deviceId, () =>
              this.evaluate(ruleSet, telemetry, message.topic, { ids, position }),
            ),
          );
      }),
    );
    if (invalid.length > 0)
      throw new DmpError(MessagingErrorCode.InvalidMessage, invalid.slice(0, 5).join('; '), false);
  }

  /** Refused data comes in floods (a fleet with a wrong clock): one line per interval, with the count of the others. */
  private logSkipped(message: RocketMqMessage, entry: TelemetryEntry, what: string): void {
    const now = Date.now();
    if (now - this.lastSkipLogAt < SKIP_LOG_INTERVAL_MS) {
      this.unloggedSkips++;
      return;
    }
    const others = this.unloggedSkips > 0 ? ` (and ${this.unloggedSkips} more since the last report)` : '';
    this.lastSkipLogAt = now;
    this.unloggedSkips = 0;
    const json = entry.telemetry as { deviceId?: unknown; messageId?: unknown } | null;
    const id = (v: unknown) => (typeof v === 'string' ? v.slice(0, 128) : '?');
    this.log.warn(
      `rules: ${message.topic} message ${id(json?.messageId)} of device ${id(json?.deviceId)} ${what}, as storage refuses it${others}`.slice(
        0,
        2048,
      ),
    );
  }

  /** `pack`: the device's message ids in this RocketMQ message, and this one's position among them. */
  private async evaluate(
    ruleSet: RuleSet,
    telemetry: NormalizedTelemetry,
    topic: string,
    pack: { ids: readonly string[]; position: number },
  ): Promise<void> {
    const { deviceId } = telemetry;
    const [stored, activations, metadata] = await Promise.all([
      this.stateStore.load(deviceId),
      this.alarmStore.load(deviceId),
      this.metadata.get(deviceId),
    ]);
    const start = decideStart({
      telemetry,
      pack,
      lastCompleted: stored.last[topic],
      recent: stored.recent,
      metadata,
    });
    if (start.kind === 'duplicate') {
      this.duplicates.inc();
      return;
    }
    const { device } = start;

    const span = tracer.startSpan('evaluate rules', {
      attributes: { 'dmp.ruleset.version': ruleSet.version, 'dmp.device.id': deviceId },
    });
    const stopTimer = this.evalSeconds.startTimer();
    const evaluation = evaluateMessage(ruleSet, telemetry, device, stored.state, activations, {
      now: Date.now(),
    });
    stopTimer();
    for (const { ruleId, result, code } of evaluation.results) {
      this.evaluations.inc({ rule: ruleId, result });
      if (code) this.errors.inc({ rule: ruleId, code });
    }
    const counts = summarize(evaluation);
    span.setAttributes({
      'dmp.rules.evaluated': counts.evaluated,
      'dmp.rules.matched': counts.matched,
      'dmp.rules.transitions': counts.transitions,
    });
    const plan = planCommit(evaluation);
    try {
      await context.with(trace.setSpan(context.active(), span), async () => {
        for (const { topic: target, ruleId } of plan.routes)
          await this.routes.route(target, telemetry, ruleId, ruleSet.version);
        await this.commitWithRetry(ruleSet, telemetry, topic, device, stored.state, plan);
      });
    } catch (error) {
      recordFailure(span, error);
      throw error;
    } finally {
      span.end();
    }
  }

  /**
   * Commits the evaluation with the message's completion; rules that lost a race (another replica, the
   * timer) are re-read and re-evaluated, the other rules' transitions kept.
   */
  private async commitWithRetry(
    ruleSet: RuleSet,
    telemetry: NormalizedTelemetry,
    topic: string,
    device: RuleDevice,
    before: DeviceState,
    plan: CommitPlan,
  ): Promise<void> {
    const message = { telemetry, topic, outbox: plan.outbox };
    let { transitions, triggered } = plan;
    for (let round = 0; ; round++) {
      const result = await this.alarms.commit(telemetry.deviceId, transitions, triggered, message);
      if (result.kind === 'duplicate') return this.duplicates.inc();
      const next = decideAfterCommit({
        deviceId: telemetry.deviceId,
        round,
        conflicts: result.kind === 'conflict' ? result.rules : new Set(),
      });
      if (next.kind === 'committed') return;
      if (next.kind === 'give-up') throw next.error;
      const fresh = await this.alarmStore.load(telemetry.deviceId);
      const narrowed = narrowTo(ruleSet, fresh, next.rules);
      const again = planCommit(
        evaluateMessage(narrowed.ruleSet, telemetry, device, before, narrowed.activations, {
          now: Date.now(),
        }),
      );
      transitions = [...transitions.filter((t) => !next.rules.has(t.ruleId)), ...again.transitions];
      triggered = [...triggered.filter((a) => !next.rules.has(a.ruleId)), ...again.triggered];
    }
  }
}
