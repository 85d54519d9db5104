import { AlarmErrorCode, type DeviceMetadata, DmpError, type NormalizedTelemetry } from '@dmp/contracts';
import type {
  Activation,
  MessageEvaluation,
  PlannedAction,
  RuleDevice,
  RuleSet,
  Transition,
} from '@dmp/rules';
import { actionEntries } from '../alarms/alarm.service';
import { isEvaluated } from '../state/device-state.store';

/**
 * The decisions of RuleProcessor, apart from its effects (Redis, RocketMQ, spans): whether a device
 * message is evaluated, what its evaluation obliges and in which order, and what a lost compare-and-set
 * leaves to do. Pure: the processor reads the facts, calls these and carries out what they say.
 */

const MAX_CONFLICT_ROUNDS = 3;

export type StartDecision =
  /** Evaluated before (a redelivered pack): skip it, count a duplicate. */
  { kind: 'duplicate' } | { kind: 'evaluate'; device: RuleDevice };

/**
 * Whether the `pack.position`-th message of a device is evaluated, given the device's last completed
 * message of the topic and its recently completed ones, and as which device: the message carries the tenant, product and site it was
 * enriched with; tags come from the registry.
 */
export function decideStart(facts: {
  telemetry: NormalizedTelemetry;
  pack: { ids: readonly string[]; position: number };
  lastCompleted: string | undefined;
  recent: readonly string[];
  metadata: DeviceMetadata;
}): StartDecision {
  const { telemetry, pack, lastCompleted, recent, metadata } = facts;
  if (isEvaluated(pack.ids, pack.position, lastCompleted, recent)) return { kind: 'duplicate' };
  return {
    kind: 'evaluate',
    device: {
      deviceId: telemetry.deviceId,
      tenantId: telemetry.tenantId || metadata.tenantId,
      productId: telemetry.productId || metadata.productId,
      siteId: telemetry.siteId || metadata.siteId,
      tags: metadata.tags,
    },
  };
}

/**
 * What one evaluation obliges, in the order it must be done for the acknowledgement to mean "durable":
 * (1) the routed copies of matched messages (at least once: sent again if what follows fails), (2) in
 * one atomic step the transitions with the actions they trigger (compare-and-set, retried on conflict),
 * the device's state, the message as completed and the outbox entries of its match commands and
 * webhooks, (3) those entries carried out off the path. A transition written apart from the state would
 * let another topic's message of the device see the condition moved on values it does not see (and
 * start the episode again); a completion written before (1) would let a redelivery skip the routes.
 */
export interface CommitPlan {
  transitions: Transition[];
  /** Actions of the transitions (raise/clear), committed with them. */
  triggered: PlannedAction[];
  routes: { topic: string; ruleId: string }[];
  outbox: ReturnType<typeof actionEntries>;
}

export function planCommit(evaluation: Pick<MessageEvaluation, 'transitions' | 'actions'>): CommitPlan {
  const onMatch = evaluation.actions.filter((a) => a.trigger === 'match');
  return {
    transitions: evaluation.transitions,
    triggered: evaluation.actions.filter((a) => a.trigger !== 'match'),
    routes: onMatch.flatMap((a) => (a.kind === 'route' ? [{ topic: a.topic, ruleId: a.ruleId }] : [])),
    outbox: actionEntries(onMatch),
  };
}

/** Counts of one evaluation, for its span. */
export function summarize(evaluation: Pick<MessageEvaluation, 'results' | 'transitions'>): {
  evaluated: number;
  matched: number;
  transitions: number;
} {
  return {
    evaluated: evaluation.results.length,
    matched: evaluation.results.filter((r) => r.result === 'match').length,
    transitions: evaluation.transitions.length,
  };
}

export type ConflictDecision =
  | { kind: 'committed' }
  /** The conditions kept changing: fail (retryable), RocketMQ redelivers the message. */
  | { kind: 'give-up'; error: DmpError }
  /** Re-read these rules' activations and evaluate only them again. */
  | { kind: 'reevaluate'; rules: ReadonlySet<string> };

/**
 * After commit round `round` (from 0) lost the compare-and-set of `conflicts` (rules whose condition
 * another replica or the timer moved meanwhile): done, again for those rules, or give up — bounded, so
 * a flapping condition does not hold the device's messages forever.
 */
export function decideAfterCommit(facts: {
  deviceId: string;
  round: number;
  conflicts: ReadonlySet<string>;
}): ConflictDecision {
  const { deviceId, round, conflicts } = facts;
  if (conflicts.size === 0) return { kind: 'committed' };
  if (round + 1 >= MAX_CONFLICT_ROUNDS)
    return {
      kind: 'give-up',
      error: new DmpError(
        AlarmErrorCode.Conflict,
        `conditions of ${deviceId} kept changing concurrently (${[...conflicts].join(', ')})`,
        true,
      ),
    };
  return { kind: 'reevaluate', rules: conflicts };
}

/** The rule set and the fresh activations narrowed to the rules to evaluate again. */
export function narrowTo(
  ruleSet: RuleSet,
  activations: ReadonlyMap<string, Activation>,
  rules: ReadonlySet<string>,
): { ruleSet: RuleSet; activations: Map<string, Activation> } {
  return {
    ruleSet: { ...ruleSet, rules: ruleSet.rules.filter((rule) => rules.has(rule.id)) },
    activations: new Map([...activations].filter(([ruleId]) => rules.has(ruleId))),
  };
}
