import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { costsToken, DeviceRateLimiter, takeToken } from './token-bucket';

describe('takeToken', () => {
  it('lets a full bucket spend its burst at once, then refills at the rate', () => {
    const limits = { perSecond: 10, burst: 5 };
    const bucket = { tokens: 5, at: 0 };
    const first = Array.from({ length: 7 }, () => takeToken(bucket, 0, limits));
    assert.deepEqual(first, [true, true, true, true, true, false, false]);
    assert.equal(takeToken(bucket, 99, limits), false, 'less than one token after 99 ms at 10/s');
    assert.equal(takeToken(bucket, 100, limits), true, 'one token after 100 ms');
    assert.equal(takeToken(bucket, 100, limits), false);
  });

  it('never holds more than the burst, however long the device was idle', () => {
    const limits = { perSecond: 1000, burst: 3 };
    const bucket = { tokens: 0, at: 0 };
    const after = Array.from({ length: 4 }, () => takeToken(bucket, 3_600_000, limits));
    assert.deepEqual(after, [true, true, true, false]);
  });

  it('keeps the long-run average at the rate', () => {
    const limits = { perSecond: 50, burst: 10 };
    const bucket = { tokens: 10, at: 0 };
    let allowed = 0;
    // 10 s of a device trying every millisecond.
    for (let t = 0; t < 10_000; t++) if (takeToken(bucket, t, limits)) allowed++;
    assert.ok(allowed >= 500 && allowed <= 511, `allowed ${allowed}`);
  });
});

describe('DeviceRateLimiter', () => {
  it('limits each device on its own bucket', () => {
    let now = 0;
    const limiter = new DeviceRateLimiter({ perSecond: 1, burst: 2 }, 100, () => now);
    assert.deepEqual(
      ['a', 'a', 'a', 'b', 'b', 'b'].map((id) => limiter.allow(id)),
      [true, true, false, true, true, false],
    );
    now = 1_000;
    assert.equal(limiter.allow('a'), true);
    assert.equal(limiter.allow('a'), false);
  });

  it("counts a message once: the broker's redeliveries take no token, even from an empty bucket", () => {
    const limiter = new DeviceRateLimiter({ perSecond: 1, burst: 3 }, 100, () => 0);
    const first = [1, 2, 3, 4].map(() => limiter.allow('a', { redelivery: false }));
    assert.deepEqual(first, [true, true, true, false], 'the burst, then refused');
    // dmp-mqtt restarted or a hand-off failed: the broker sends the three accepted ones again (DUP).
    const again = [1, 2, 3].map(() => limiter.allow('a', { redelivery: true }));
    assert.deepEqual(again, [true, true, true]);
    assert.equal(limiter.allow('a', { redelivery: false }), false, 'the bucket is still empty');
  });

  it('charges a first delivery and not a redelivery', () => {
    assert.equal(costsToken({ redelivery: false }), true);
    assert.equal(costsToken({ redelivery: true }), false);
  });

  it('allows everything when the rate is 0 (limit off)', () => {
    const limiter = new DeviceRateLimiter({ perSecond: 0, burst: 1 }, 10, () => 0);
    assert.ok(Array.from({ length: 100 }, () => limiter.allow('x')).every(Boolean));
  });
});
