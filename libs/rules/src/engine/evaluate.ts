import {
  stateAfter,
  type AlarmEvent,
  type AlarmSeverity,
  type AlarmTransition,
  type MetricValue,
  type NormalizedTelemetry,
} from '@dmp/contracts';
import { createHash } from 'node:crypto';
import {
  CelDevice,
  CelMessage,
  CelState,
  evaluateCondition,
  inputValues,
  renderTemplate,
  toPlain,
  type CelContext,
  type ConditionResult,
} from './cel';
import type { RuleErrorCode } from './budget';
import type {
  ActionTrigger,
  CommandAction,
  CompiledParams,
  CompiledRule,
  RouteAction,
  RuleSet,
  WebhookAction,
} from './ruleset';

/**
 * The rule engine's core: plain functions from (rule set, message, device, recent state, condition
 * states) to (results, condition transitions with their alarm events, actions to run, new state).
 * No I/O: the kernel persists and executes what it returns, the CLI's dry run prints it, the back-test
 * replays history through it with everything kept in memory, the benchmark measures it.
 */

/** Device metadata as rules see it (`device.*`). */
export interface RuleDevice {
  deviceId: string;
  tenantId: string;
  productId: string;
  siteId: string;
  tags: Readonly<Record<string, string>>;
}

/** A device's recent state: the last known value of each metric, when it was measured, and by which message. */
export interface DeviceState {
  values: Record<string, MetricValue>;
  ts: Record<string, number>;
  /** The `seq` of the message a value came from, when it had one: it orders values of the same time. */
  seq: Record<string, number>;
}

export const emptyState = (): DeviceState => ({ values: {}, ts: {}, seq: {} });

/**
 * The condition state of one (device, rule): kept while the condition is pending (holding, `for` not
 * elapsed) or active (raised; for alarms also acknowledged). A cleared or cancelled condition has no
 * activation any more. For rules with an alarm, `id` is the alarm id.
 */
export interface Activation {
  id: string;
  ruleId: string;
  deviceId: string;
  /** Whether transitions are alarm events (the rule has an alarm action). */
  alarm: boolean;
  state: 'pending' | 'active' | 'acknowledged';
  /** Transitions so far (the version of the latest alarm event). */
  version: number;
  ruleName: string;
  severity: AlarmSeverity;
  message: string;
  tenantId: string;
  productId: string;
  siteId: string;
  /** Message time the condition started to hold. */
  since: number;
  /** Pending only: wall-clock time at which the timer raises it if nothing said otherwise. */
  dueAt: number;
  raisedAt: number;
  acknowledgedAt: number;
  acknowledgedBy: string;
}

/** One change of a condition state; `after` undefined means the activation ended (cleared, cancelled). */
export interface Transition {
  ruleId: string;
  deviceId: string;
  transition: AlarmTransition;
  /** When it happened (message time, or wall-clock for acknowledgements). */
  ts: number;
  before?: Activation;
  after?: Activation;
  /** The alarm event, for rules with an alarm. */
  event?: AlarmEvent;
}

export interface PlannedCommand {
  kind: 'command';
  ruleId: string;
  trigger: ActionTrigger;
  deviceId: string;
  /** Stable for a given cause (message or alarm transition) and action: a redelivery resends the same id. */
  commandId: string;
  name: string;
  params: unknown;
  ts: number;
  /** The rule's `ttl:` for it; unset: the kernel's KERNEL_COMMAND_TTL_MS. */
  ttlMs?: number;
}

export interface PlannedWebhook {
  kind: 'webhook';
  ruleId: string;
  trigger: ActionTrigger;
  deviceId: string;
  /** Idempotency key of the delivery. */
  deliveryId: string;
  url: string;
  headers: Readonly<Record<string, string>>;
  payload: WebhookPayload;
}

export interface PlannedRoute {
  kind: 'route';
  ruleId: string;
  trigger: ActionTrigger;
  deviceId: string;
  topic: string;
}

export type PlannedAction = PlannedCommand | PlannedWebhook | PlannedRoute;

export interface WebhookPayload {
  event: `rule.${ActionTrigger}`;
  deliveryId: string;
  ruleId: string;
  ruleName: string;
  deviceId: string;
  tenantId: string;
  productId: string;
  siteId: string;
  ts: number;
  messageId: string;
  alarm: { alarmId: string; state: string; severity: string; message: string } | null;
  values: Record<string, MetricValue>;
  params: unknown;
  rulesetVersion: string;
}

export interface RuleResult {
  ruleId: string;
  /** The outcome of `when`. */
  result: ConditionResult;
  /** Set when `when` or `clear` failed: DMP_ERR_RULE_BUDGET, DMP_ERR_RULE_EVALUATION. */
  code?: RuleErrorCode;
  /** What went wrong (prefixed `clear:` when it was the clear condition). */
  error?: string;
}

export interface MessageEvaluation {
  /** Every rule in scope of the message, with its condition's outcome. */
  results: RuleResult[];
  transitions: Transition[];
  actions: PlannedAction[];
  /** The device's state after the message. */
  state: DeviceState;
}

export interface EvaluateOptions {
  /** Wall-clock now (ms), for the timer of pending conditions. */
  now: number;
  /**
   * New activation / alarm ids; by default {@link activationId} — deterministic, so a message evaluated
   * again (a redelivery) starts the same episode under the same id. Tests and back-tests pass their own.
   */
  newId?: () => string;
}

/**
 * The id of the condition episode (the alarm id) a message starts: a hash of the rule, the device and the
 * message that started it. A rule's condition can start at most once per device message, so ids do not
 * collide, and a redelivered message cannot raise a second alarm under a new id.
 */
export function activationId(ruleId: string, deviceId: string, messageId: string): string {
  const hash = createHash('sha1').update(`${ruleId}\u0000${deviceId}\u0000${messageId}`).digest('hex');
  return `alm-${hash.slice(0, 24)}`;
}

/**
 * Evaluates one message against every rule of the set in its scope. `activations` are the device's
 * current condition states by rule id; the returned transitions say how they change.
 *
 * Per tracked rule: a pending condition whose `for` elapsed before this message (in message time) is
 * raised first (with change-event telemetry a value holds until the next message says otherwise);
 * then `when` is applied — true: start pending (or raise at once without `for`), keep, or raise;
 * false: cancel a pending condition, clear an active one (or, with `clear`, only when `clear` is true).
 * Missing data or an evaluation error changes nothing.
 */
export function evaluateMessage(
  ruleSet: RuleSet,
  message: NormalizedTelemetry,
  device: RuleDevice,
  before: DeviceState,
  activations: ReadonlyMap<string, Activation>,
  options: EvaluateOptions,
): MessageEvaluation {
  const state = mergeState(before, message);
  const context = celContext(message, device, before, state);
  const results: RuleResult[] = [];
  const transitions: Transition[] = [];
  const actions: PlannedAction[] = [];
  const newId =
    options.newId ?? ((ruleId: string) => activationId(ruleId, device.deviceId, message.messageId));
  const cause = { messageId: message.messageId, ts: message.ts };

  const step = (rule: CompiledRule, transition: Transition) => {
    transitions.push(transition);
    const trigger =
      transition.transition === 'raised'
        ? 'raise'
        : transition.transition === 'cleared'
          ? 'clear'
          : undefined;
    if (!trigger) return transition.after;
    const activation = transition.after ?? transition.before;
    for (const action of rule.actions)
      if (action.on === trigger)
        actions.push(
          plan(
            ruleSet,
            rule,
            action,
            trigger,
            context,
            { messageId: message.messageId, ts: transition.ts },
            activation,
          ),
        );
    return transition.after;
  };

  for (const rule of ruleSet.rules) {
    if (!inScope(rule, message, device)) continue;
    const outcome = evaluateCondition(rule.when, context);
    const { result } = outcome;
    const ruleResult: RuleResult =
      outcome.result === 'error'
        ? { ruleId: rule.id, result, code: outcome.code, error: outcome.error }
        : { ruleId: rule.id, result };
    results.push(ruleResult);

    if (result === 'match')
      for (const action of rule.actions)
        if (action.on === 'match')
          actions.push(plan(ruleSet, rule, action, 'match', context, cause, undefined));

    if (!rule.tracked) continue;
    let current = activations.get(rule.id);

    // The timer in message time: held long enough before this message.
    if (current?.state === 'pending' && current.since + rule.forMs <= message.ts)
      current = step(
        rule,
        transitionOf(
          ruleSet,
          rule,
          current,
          'raised',
          current.since + rule.forMs,
          state.values,
          message.messageId,
          { why: why(rule, context) },
        ),
      );

    if (result === 'match') {
      if (!current) {
        const created = newActivation(rule, device, newId(rule.id), message.ts, options.now, context);
        const first = rule.forMs === 0 ? 'raised' : 'pending';
        step(
          rule,
          transitionOf(ruleSet, rule, created, first, message.ts, state.values, message.messageId, {
            fresh: true,
            why: why(rule, context),
          }),
        );
      }
    } else if (current) {
      if (current.state === 'pending') {
        if (result === 'no_match')
          step(
            rule,
            transitionOf(ruleSet, rule, current, 'cancelled', message.ts, state.values, message.messageId, {
              why: why(rule, context),
            }),
          );
      } else if (rule.clear ? clears(rule.clear, ruleResult, context) : result === 'no_match') {
        step(
          rule,
          transitionOf(ruleSet, rule, current, 'cleared', message.ts, state.values, message.messageId, {
            why: why(rule, context),
          }),
        );
      }
    }
  }

  // Conditions of rules that are no longer in the set (removed, disabled) end with the device's next message.
  for (const [ruleId, activation] of activations) {
    if (ruleIdsOf(ruleSet).has(ruleId)) continue;
    transitions.push(endCondition(ruleSet, activation, message.ts, state.values, message.messageId));
  }
  return { results, transitions, actions, state };
}

/** Whether the clear condition holds; its error, if any, goes to the rule's result. */
function clears(
  clear: NonNullable<CompiledRule['clear']>,
  ruleResult: RuleResult,
  context: CelContext,
): boolean {
  const outcome = evaluateCondition(clear, context);
  if (outcome.result === 'error' && !ruleResult.code) {
    ruleResult.code = outcome.code;
    ruleResult.error = `clear: ${outcome.error}`;
  }
  return outcome.result === 'match';
}

const ruleIds = new WeakMap<RuleSet, ReadonlySet<string>>();
function ruleIdsOf(ruleSet: RuleSet): ReadonlySet<string> {
  let ids = ruleIds.get(ruleSet);
  if (!ids) {
    ids = new Set(ruleSet.rules.map((rule) => rule.id));
    ruleIds.set(ruleSet, ids);
  }
  return ids;
}

/**
 * The timer: raises a pending condition whose `for` elapsed without a message saying otherwise —
 * by wall clock (`dueAt <= now`, the kernel's scheduler) or by message time (`atMessageTime`, the
 * back-test's end of range). The raise is dated `since + for`.
 */
export function raiseIfDue(
  ruleSet: RuleSet,
  rule: CompiledRule,
  activation: Activation,
  device: RuleDevice,
  state: DeviceState,
  when: { now: number } | { atMessageTime: number },
): { transition: Transition; actions: PlannedAction[] } | undefined {
  if (activation.state !== 'pending') return undefined;
  const raisedAt = activation.since + rule.forMs;
  const due = 'now' in when ? activation.dueAt <= when.now : raisedAt <= when.atMessageTime;
  if (!due) return undefined;
  // No message caused it: the condition and actions see the device's latest picture as the message.
  const message: NormalizedTelemetry = {
    deviceId: device.deviceId,
    messageId: '',
    kind: 'telemetry',
    ts: raisedAt,
    metrics: state.values,
    receivedAt: raisedAt,
    tenantId: device.tenantId,
    productId: device.productId,
    siteId: device.siteId,
  };
  const context = celContext(message, device, state, state);
  const transition = transitionOf(ruleSet, rule, activation, 'raised', raisedAt, state.values, '', {
    why: why(rule, context),
  });
  const actions = rule.actions
    .filter((action) => action.on === 'raise')
    .map((action) =>
      plan(ruleSet, rule, action, 'raise', context, { messageId: '', ts: raisedAt }, transition.after),
    );
  return { transition, actions };
}

/** Ends the condition of a rule that is no longer in the set: a pending one is cancelled, an active one cleared. */
export function endCondition(
  ruleSet: RuleSet,
  activation: Activation,
  ts: number,
  values: Record<string, MetricValue>,
  messageId = '',
): Transition {
  const ending = activation.state === 'pending' ? 'cancelled' : 'cleared';
  return transitionOf(ruleSet, { id: activation.ruleId }, activation, ending, ts, values, messageId, {});
}

/** An operator acknowledges an active alarm (the only transition not caused by data). */
export function acknowledge(
  ruleSet: RuleSet | undefined,
  activation: Activation,
  by: string,
  now: number,
  values: Record<string, MetricValue>,
): Transition | { refused: string } {
  if (!activation.alarm) return { refused: 'not an alarm' };
  if (activation.state === 'pending') return { refused: 'the alarm is pending, not raised yet' };
  if (activation.state === 'acknowledged')
    return { refused: `already acknowledged by ${activation.acknowledgedBy || 'someone'}` };
  const after: Activation = {
    ...activation,
    state: 'acknowledged',
    version: activation.version + 1,
    acknowledgedAt: now,
    acknowledgedBy: by,
  };
  return {
    ruleId: activation.ruleId,
    deviceId: activation.deviceId,
    transition: 'acknowledged',
    ts: now,
    before: activation,
    after,
    event: alarmEvent(after, 'acknowledged', now, '', values, ruleSet?.version ?? '', {
      inputs: {},
      ruleText: ruleSet?.rules.find((r) => r.id === activation.ruleId)?.text ?? '',
    }),
  };
}

// ---------------------------------------------------------------------------------------------

/**
 * When a message's values were measured, as the device state orders them: its `ts`, but never later than
 * `receivedAt` (when DMP received it). A device clock running ahead cannot date a value past the moment it
 * arrived, so the next current message always replaces it — an alarm on `state.latest` can always be
 * cleared by current data — while a late message (backfill from a device's buffer) still does not
 * overwrite a newer value.
 */
export const stateTimeOf = (message: Pick<NormalizedTelemetry, 'ts' | 'receivedAt'>): number =>
  Math.min(message.ts, message.receivedAt);

/**
 * Whether a value measured at `at` by a message numbered `seq` replaces the known one (`known`): unless
 * that one is newer by {@link stateTimeOf}, or of the same time from a later message of the device. A
 * device's change event and snapshot of one instant are consumed from two topics, in either order, so
 * arrival order cannot break that tie; it does only when a message has no `seq`. The device state store
 * keeps the same rule in Redis.
 */
export function replacesKnown(
  known: { at: number | undefined; seq: number | undefined },
  at: number,
  seq: number | undefined,
): boolean {
  if (known.at === undefined || known.at < at) return true;
  return known.at === at && (known.seq === undefined || seq === undefined || known.seq <= seq);
}

/** The device's state after the message: each of its metrics replaces the known value by {@link replacesKnown}. */
export function mergeState(before: DeviceState, message: NormalizedTelemetry): DeviceState {
  const values = { ...before.values };
  const ts = { ...before.ts };
  const seq = { ...before.seq };
  const at = stateTimeOf(message);
  for (const [name, value] of Object.entries(message.metrics)) {
    if (!replacesKnown({ at: ts[name], seq: seq[name] }, at, message.seq)) continue;
    values[name] = value;
    ts[name] = at;
    if (message.seq === undefined) delete seq[name];
    else seq[name] = message.seq;
  }
  return { values, ts, seq };
}

export function celContext(
  message: NormalizedTelemetry,
  device: RuleDevice,
  before: DeviceState,
  after: DeviceState,
): CelContext {
  return {
    msg: new CelMessage(
      message.deviceId,
      message.messageId,
      message.kind,
      message.ts,
      message.receivedAt,
      message.seq ?? 0,
      message.metrics,
    ),
    device: new CelDevice(device.deviceId, device.tenantId, device.productId, device.siteId, device.tags),
    state: new CelState(before.values, after.values, after.ts),
  };
}

function inScope(rule: CompiledRule, message: NormalizedTelemetry, device: RuleDevice): boolean {
  const { scope } = rule;
  if (scope.kinds && !scope.kinds.has(message.kind)) return false;
  if (scope.products && !scope.products.has(device.productId)) return false;
  if (scope.tenants && !scope.tenants.has(device.tenantId)) return false;
  if (scope.sites && !scope.sites.has(device.siteId)) return false;
  return true;
}

function newActivation(
  rule: CompiledRule,
  device: RuleDevice,
  id: string,
  since: number,
  now: number,
  context: CelContext,
): Activation {
  const message = rule.alarm ? renderTemplate(rule.alarm.message, context) : '';
  return {
    id,
    ruleId: rule.id,
    deviceId: device.deviceId,
    alarm: !!rule.alarm,
    state: 'pending',
    version: 0,
    ruleName: rule.name,
    severity: rule.alarm?.severity ?? 'info',
    message: typeof message === 'string' ? message.slice(0, 2048) : JSON.stringify(message).slice(0, 2048),
    tenantId: device.tenantId,
    productId: device.productId,
    siteId: device.siteId,
    since,
    dueAt: now + rule.forMs,
    raisedAt: 0,
    acknowledgedAt: 0,
    acknowledgedBy: '',
  };
}

function transitionOf(
  ruleSet: RuleSet,
  rule: { id: string },
  current: Activation,
  transition: AlarmTransition,
  ts: number,
  values: Record<string, MetricValue>,
  messageId: string,
  { fresh = false, why = { inputs: {}, ruleText: '' } }: { fresh?: boolean; why?: Explanation },
): Transition {
  const version = current.version + 1;
  let after: Activation | undefined;
  let final: Activation;
  switch (transition) {
    case 'pending':
      after = { ...current, version, state: 'pending' };
      final = after;
      break;
    case 'raised':
      after = { ...current, version, state: 'active', dueAt: 0, raisedAt: ts };
      final = after;
      break;
    default:
      // cleared / cancelled: the activation ends; the event still describes it.
      after = undefined;
      final = { ...current, version, dueAt: 0 };
  }
  return {
    ruleId: rule.id,
    deviceId: current.deviceId,
    transition,
    ts,
    ...(fresh ? {} : { before: current }),
    ...(after ? { after } : {}),
    ...(current.alarm
      ? { event: alarmEvent(final, transition, ts, messageId, values, ruleSet.version, why) }
      : {}),
  };
}

function alarmEvent(
  activation: Activation,
  transition: AlarmTransition,
  ts: number,
  messageId: string,
  values: Record<string, MetricValue>,
  rulesetVersion: string,
  why: Explanation,
): AlarmEvent {
  const state = stateAfter[transition];
  return {
    eventId: `${activation.id}:${activation.version}`,
    alarmId: activation.id,
    version: activation.version,
    transition,
    state,
    deviceId: activation.deviceId,
    ruleId: activation.ruleId,
    ruleName: activation.ruleName,
    severity: activation.severity,
    message: activation.message,
    tenantId: activation.tenantId,
    productId: activation.productId,
    siteId: activation.siteId,
    ts,
    startedAt: activation.since,
    raisedAt: activation.raisedAt,
    acknowledgedAt: activation.acknowledgedAt,
    acknowledgedBy: activation.acknowledgedBy,
    clearedAt: state === 'cleared' || state === 'cancelled' ? ts : 0,
    messageId,
    values: { ...values },
    rulesetVersion,
    inputs: why.inputs,
    ruleText: why.ruleText,
    traceId: '',
  };
}

/** What an alarm event records to explain its transition: the rule's text and the values its conditions read. */
interface Explanation {
  inputs: Record<string, unknown>;
  ruleText: string;
}

const why = (rule: CompiledRule, context: CelContext): Explanation => ({
  inputs: inputValues([rule.when, rule.clear], context),
  ruleText: rule.text,
});

function plan(
  ruleSet: RuleSet,
  rule: CompiledRule,
  action: CommandAction | WebhookAction | RouteAction,
  trigger: ActionTrigger,
  context: CelContext,
  cause: { messageId: string; ts: number },
  activation: Activation | undefined,
): PlannedAction {
  const deviceId = context.device.id;
  // Same cause, same action → same id: a redelivered message or a republished raise resends, not duplicates.
  const causeKey = cause.messageId || `${activation?.id ?? ''}:${activation?.version ?? 0}`;
  const stableId = (prefix: string) =>
    `${prefix}-${createHash('sha1').update(`${deviceId}\u0000${causeKey}\u0000${rule.id}\u0000${action.index}\u0000${trigger}`).digest('hex').slice(0, 20)}`;
  switch (action.kind) {
    case 'command':
      return {
        kind: 'command',
        ruleId: rule.id,
        trigger,
        deviceId,
        commandId: stableId('cmd'),
        name: action.name,
        params: renderParams(action.params, context),
        ts: cause.ts,
        ...(action.ttlMs !== undefined ? { ttlMs: action.ttlMs } : {}),
      };
    case 'webhook': {
      const deliveryId = stableId('whk');
      return {
        kind: 'webhook',
        ruleId: rule.id,
        trigger,
        deviceId,
        deliveryId,
        url: action.url,
        headers: action.headers,
        payload: {
          event: `rule.${trigger}`,
          deliveryId,
          ruleId: rule.id,
          ruleName: rule.name,
          deviceId,
          tenantId: context.device.tenantId,
          productId: context.device.productId,
          siteId: context.device.siteId,
          ts: cause.ts,
          messageId: cause.messageId,
          alarm:
            activation?.alarm === true
              ? {
                  alarmId: activation.id,
                  state: trigger === 'clear' ? 'cleared' : activation.state,
                  severity: activation.severity,
                  message: activation.message,
                }
              : null,
          values: { ...context.state.latest },
          params: renderParams(action.params, context),
          rulesetVersion: ruleSet.version,
        },
      };
    }
    case 'route':
      return { kind: 'route', ruleId: rule.id, trigger, deviceId, topic: action.topic };
  }
}

export function renderParams(params: CompiledParams, context: CelContext): unknown {
  switch (params.kind) {
    case 'literal':
      return params.value;
    case 'template':
      return toPlain(renderTemplate(params.template, context)) ?? null;
    case 'list':
      return params.items.map((item) => renderParams(item, context));
    case 'map':
      return Object.fromEntries(params.entries.map(([key, value]) => [key, renderParams(value, context)]));
  }
}
