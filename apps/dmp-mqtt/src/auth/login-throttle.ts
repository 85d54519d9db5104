import { LRUCache } from 'lru-cache';
import { takeToken, type TokenBucket, type TokenBucketLimits } from '../rate-limit/token-bucket';

/**
 * Throttling of failed logins, per device id and per peer — the guard that keeps a flood of wrong
 * passwords from turning into a flood of scrypt checks (docs/devices.md, "Login abuse").
 *
 * Each id and each peer has a token bucket (the project's one, rate-limit/token-bucket.ts). A login
 * takes its id's token before the password check ({@link LoginThrottle.admit}) — so concurrent attempts
 * cannot all pass a bucket that holds one token — and gets it back if it succeeds or is never checked; a
 * failure also takes one from its peer's bucket ({@link LoginThrottle.failed}). A gateway behind one
 * address may reconnect thousands of devices at once: their successes cost nothing.
 *
 * Bounded lockout. An id whose failures emptied its bucket is refused for 1/perSecond seconds per
 * token, and the bucket is full again `burst / perSecond` after the failures stop. While a flood goes
 * on, a device still gets in from an address it logged in from before (an id–peer pair that
 * succeeded is trusted for `trustTtlMs`): flooding an id from elsewhere cannot lock its device out.
 * The per-peer bucket has no such exception.
 *
 * Unknown ids are throttled exactly like known ones: the answer never tells which ids exist. State is
 * per replica, in bounded LRUs (an evicted bucket comes back full); EMQX spreads its HTTP calls over
 * the replicas, so with R replicas an attacker gets up to R times the limits.
 */
export interface LoginThrottleLimits {
  /** Failed logins per device id (perSecond 0: not throttled per id). */
  perId: TokenBucketLimits;
  /** Failed logins per peer address, IPv6 by /64 (perSecond 0: not throttled per peer). */
  perPeer: TokenBucketLimits;
  /** Ids, peers and trusted pairs remembered, each. */
  maxEntries: number;
  /** How long an id–peer pair that logged in is exempt from the per-id throttle. */
  trustTtlMs: number;
}

export type ThrottleVerdict = 'ok' | 'throttled_id' | 'throttled_peer';

export class LoginThrottle {
  private readonly ids: LRUCache<string, TokenBucket>;
  private readonly peers: LRUCache<string, TokenBucket>;
  private readonly trusted: LRUCache<string, true>;

  constructor(
    private readonly limits: LoginThrottleLimits,
    private readonly now: () => number = () => performance.now(),
  ) {
    this.ids = new LRUCache({ max: limits.maxEntries });
    this.peers = new LRUCache({ max: limits.maxEntries });
    this.trusted = new LRUCache({
      max: limits.maxEntries,
      ttl: Math.max(1, limits.trustTtlMs),
      perf: { now: this.now },
      ttlResolution: 0,
    });
  }

  /** Takes a token for a login of `id` from `peerhost`, or says why it may not go on to the password check. */
  admit(id: string, peerhost: string | undefined): ThrottleVerdict {
    const now = this.now();
    const peer = peerKey(peerhost);
    // The peer's bucket is only looked at here and drained by failures: a gateway's reconnect storm of
    // hundreds of concurrent (successful) logins must not run it dry. Concurrent failures from one
    // peer overshoot by at most what the scrypt gate lets in.
    if (peer !== undefined) {
      const bucket = this.peers.get(peer);
      if (bucket && this.limits.perPeer.perSecond > 0 && !takeToken({ ...bucket }, now, this.limits.perPeer))
        return 'throttled_peer';
      if (this.trusted.has(pair(id, peer))) return 'ok';
    }
    return take(this.ids, id, now, this.limits.perId) ? 'ok' : 'throttled_id';
  }

  /** The admitted login failed: its peer pays a token too. */
  failed(peerhost: string | undefined): void {
    const peer = peerKey(peerhost);
    if (peer !== undefined) take(this.peers, peer, this.now(), this.limits.perPeer);
  }

  /** The admitted login was not checked after all (overloaded, registry unreachable): token back. */
  release(id: string, peerhost: string | undefined): void {
    const peer = peerKey(peerhost);
    if (peer !== undefined && this.trusted.has(pair(id, peer))) return;
    refund(this.ids.get(id), this.limits.perId);
  }

  /** The login succeeded: the id's failures are forgiven and the pair trusted. */
  succeeded(id: string, peerhost: string | undefined): void {
    this.ids.delete(id);
    const peer = peerKey(peerhost);
    if (peer !== undefined) this.trusted.set(pair(id, peer), true);
  }
}

const pair = (id: string, peer: string) => `${id}\0${peer}`;

function take(
  buckets: LRUCache<string, TokenBucket>,
  key: string,
  now: number,
  limits: TokenBucketLimits,
): boolean {
  if (limits.perSecond <= 0) return true;
  let bucket = buckets.get(key);
  if (!bucket) {
    bucket = { tokens: limits.burst, at: now };
    buckets.set(key, bucket);
  }
  return takeToken(bucket, now, limits);
}

function refund(bucket: TokenBucket | undefined, limits: TokenBucketLimits): void {
  if (bucket) bucket.tokens = Math.min(limits.burst, bucket.tokens + 1);
}

/**
 * The address a peer is throttled by: IPv4 as is (also when written IPv4-mapped, `::ffff:10.1.2.3`, as a
 * dual-stack listener reports it), IPv6 by its /64 — one subscriber usually holds a whole /64, and
 * per-address buckets would give it 2^64 of them. Undefined when EMQX sent none.
 */
export function peerKey(peerhost: string | undefined): string | undefined {
  if (!peerhost) return undefined;
  const host = peerhost.trim().toLowerCase();
  const mapped = /^::ffff:(\d{1,3}(?:\.\d{1,3}){3})$/.exec(host);
  if (mapped) return mapped[1];
  if (!host.includes(':')) return host;
  const [head = '', tail = ''] = host.split('::');
  const left = head ? head.split(':') : [];
  const right = tail ? tail.split(':') : [];
  const groups = host.includes('::')
    ? [...left, ...Array<string>(Math.max(0, 8 - left.length - right.length)).fill('0'), ...right]
    : left;
  const prefix = groups.slice(0, 4).map((g) => (Number.parseInt(g, 16) || 0).toString(16));
  return `${prefix.join(':')}::/64`;
}
