import { LRUCache } from 'lru-cache';

/**
 * Per-device rate limit: a token bucket per device. A bucket holds up to `burst` tokens and refills at
 * `perSecond`; a message takes one; a message finding the bucket empty is refused (DMP_ERR_RATE_LIMITED).
 * A device may thus send `burst` messages at once, then `perSecond` on average.
 *
 * A message is counted once ({@link costsToken}): when it first arrives and is not a duplicate. A copy
 * the broker sends again (MQTT DUP flag: dmp-mqtt did not acknowledge it — a hand-off that failed, a
 * stall downstream, a restart of dmp-mqtt) was counted when it first came, and a copy of a message
 * already accepted is refused as a duplicate before the limit is looked at. Otherwise every redelivery
 * after a stall or a restart would spend the device's burst again, and good data beyond it would be
 * refused. A device that replays its offline buffer sends new messages (new message ids): each costs its
 * token, so a replay passes at the device's pace (≤ `perSecond`) or within `burst` at once.
 *
 * Why not rate-limiter-flexible: it has no token bucket. Its memory limiter counts fixed windows (a
 * device can send twice the limit across a window boundary) and arms a timer per key; its
 * BurstyRateLimiter stacks two fixed windows. A bucket is two numbers and exact.
 *
 * Buckets live in this replica's memory, in an LRU: an evicted (idle) bucket comes back full, which is
 * what an idle device's bucket would be anyway. Per replica: EMQX's shared subscription strategy
 * `hash_clientid` (docker/emqx/emqx.conf) sends all of a device's messages to the same replica, so the
 * per-replica limit is the device's limit; with a random strategy each of R replicas would allow the
 * limit, R times it in total (set DEVICE_RATE_LIMIT_PER_SECOND to global / R then).
 */
export interface TokenBucket {
  tokens: number;
  /** Monotonic milliseconds of the last refill. */
  at: number;
}

export interface TokenBucketLimits {
  /** Tokens per second (> 0). */
  perSecond: number;
  /** Bucket size (≥ 1). */
  burst: number;
}

/** Takes one token if there is one; returns whether it did, and mutates the bucket. Pure arithmetic. */
export function takeToken(bucket: TokenBucket, now: number, limits: TokenBucketLimits): boolean {
  const elapsed = Math.max(0, now - bucket.at);
  bucket.tokens = Math.min(limits.burst, bucket.tokens + (elapsed * limits.perSecond) / 1000);
  bucket.at = now;
  if (bucket.tokens < 1) return false;
  bucket.tokens -= 1;
  return true;
}

/** What decides a message's cost. */
export interface MessageCost {
  /** The broker sent it before (MQTT DUP flag): it was counted then. */
  redelivery: boolean;
}

/**
 * Whether a message takes a token. Called only for messages that are not duplicates (those are refused
 * first), so a message is counted once per device and message id: on its first delivery.
 */
export function costsToken(message: MessageCost): boolean {
  return !message.redelivery;
}

export class DeviceRateLimiter {
  private readonly buckets: LRUCache<string, TokenBucket>;

  constructor(
    private readonly limits: TokenBucketLimits,
    maxDevices: number,
    private readonly now: () => number = () => performance.now(),
  ) {
    this.buckets = new LRUCache({ max: maxDevices });
  }

  get enabled(): boolean {
    return this.limits.perSecond > 0;
  }

  /** True when the device may send this message now; takes its token if it {@link costsToken}. */
  allow(deviceId: string, message: MessageCost = { redelivery: false }): boolean {
    if (!this.enabled || !costsToken(message)) return true;
    const now = this.now();
    let bucket = this.buckets.get(deviceId);
    if (!bucket) {
      bucket = { tokens: this.limits.burst, at: now };
      this.buckets.set(deviceId, bucket);
    }
    return takeToken(bucket, now, this.limits);
  }
}
