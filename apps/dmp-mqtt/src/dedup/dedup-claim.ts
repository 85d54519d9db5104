import type { DedupKey } from './dedup-keys';

/**
 * The claim protocol of DuplicateFilter as pure steps; the filter keeps the state (recently accepted
 * keys, claims being handed off, Redis) and carries out what these say.
 */

export type ArrivalDecision<Claim> =
  /** A key was accepted by this replica within its window. */
  | { kind: 'duplicate'; key: DedupKey }
  /** A copy is being handed off here: wait for its outcome, then decide again. */
  | { kind: 'wait'; claim: Claim }
  /** Nothing known here: claim the keys, then ask Redis. */
  | { kind: 'claim' };

/** On arrival (and again after each wait): what this replica knows of a message's keys. */
export function decideArrival<Claim>(facts: {
  keys: readonly DedupKey[];
  accepted: { has(key: string): boolean };
  pending: { get(key: string): Claim | undefined };
}): ArrivalDecision<Claim> {
  const { keys, accepted, pending } = facts;
  const seen = keys.find((k) => accepted.has(k.key));
  if (seen) return { kind: 'duplicate', key: seen };
  for (const k of keys) {
    const claim = pending.get(k.key);
    if (claim !== undefined) return { kind: 'wait', claim };
  }
  return { kind: 'claim' };
}

/**
 * After asking Redis which keys are marked (`found`, per key; undefined: Redis did not answer): a
 * duplicate gives its claim back; otherwise the message goes on, unchecked if Redis did not answer —
 * a duplicate stored once more is better than intake stopped.
 */
export function decideLookup(
  keys: readonly DedupKey[],
  found: readonly boolean[] | undefined,
): { kind: 'duplicate'; key: DedupKey } | { kind: 'forward' } {
  const key = found && keys.find((_, i) => found[i]);
  return key ? { kind: 'duplicate', key } : { kind: 'forward' };
}

export type ClaimState = 'pending' | 'committed' | 'released';

/**
 * A claim settles once: the first outcome unregisters it (waiting copies decide again) and, if dmp-kernel
 * took the message, marks its keys; later calls change nothing. Marking only on commit is the point: a
 * mark on arrival would make the broker's redelivery of a failed hand-off a "duplicate" of nothing.
 */
export function decideSettle(
  state: ClaimState,
  outcome: 'commit' | 'release',
): { state: ClaimState; unregister: boolean; mark: boolean } {
  if (state !== 'pending') return { state, unregister: false, mark: false };
  const committed = outcome === 'commit';
  return { state: committed ? 'committed' : 'released', unregister: true, mark: committed };
}
