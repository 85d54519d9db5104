import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { LoginThrottle, peerKey } from './login-throttle';

const limits = {
  perId: { burst: 3, perSecond: 1 },
  perPeer: { burst: 5, perSecond: 1 },
  maxEntries: 100,
  trustTtlMs: 60_000,
};
const setup = () => {
  let now = 1_000; // lru-cache reads a start time of 0 as "no TTL"
  const throttle = new LoginThrottle(limits, () => now);
  return { throttle, advance: (ms: number) => (now += ms) };
};

describe('login throttle', () => {
  it('refuses an id after `burst` failures from any peers, and lets it try again as tokens refill', () => {
    const { throttle, advance } = setup();
    for (let i = 0; i < 3; i++) {
      assert.equal(throttle.admit('dev-1', `10.0.0.${i}`), 'ok');
    }
    assert.equal(throttle.admit('dev-1', '10.0.0.9'), 'throttled_id');
    assert.equal(throttle.admit('dev-2', '10.0.0.9'), 'ok', 'other ids are not affected');
    advance(999);
    assert.equal(throttle.admit('dev-1', '10.0.0.9'), 'throttled_id');
    advance(1);
    assert.equal(throttle.admit('dev-1', '10.0.0.9'), 'ok', 'bounded lockout: one token per second');
  });

  it('counts only failures: successes never drain a bucket, and a success refills the id', () => {
    const { throttle } = setup();
    for (let i = 0; i < 100; i++) {
      assert.equal(throttle.admit(`dev-${i}`, '10.0.0.1'), 'ok');
      throttle.succeeded(`dev-${i}`, '10.0.0.1');
    }
    for (let i = 0; i < 3; i++) throttle.admit('dev-x', `10.1.0.${i}`);
    assert.equal(throttle.admit('dev-x', '10.1.0.9'), 'throttled_id');
    throttle.succeeded('dev-x', '10.1.0.8');
    assert.equal(throttle.admit('dev-x', '10.1.0.9'), 'ok');
  });

  it('lets a device in from an address it logged in from while its id is flooded from elsewhere', () => {
    const { throttle, advance } = setup();
    throttle.succeeded('dev-1', '192.0.2.7');
    for (let i = 0; i < 50; i++) throttle.admit('dev-1', `10.0.${i}.1`);
    assert.equal(throttle.admit('dev-1', '10.9.9.9'), 'throttled_id');
    assert.equal(throttle.admit('dev-1', '192.0.2.7'), 'ok');
    advance(60_001);
    for (let i = 0; i < 3; i++) throttle.admit('dev-1', `10.0.${i}.1`);
    assert.equal(throttle.admit('dev-1', '192.0.2.7'), 'throttled_id', 'trust expires');
  });

  it('refuses a peer after `burst` failures, for every id, whatever its trust', () => {
    const { throttle } = setup();
    throttle.succeeded('dev-1', '10.0.0.1');
    for (let i = 0; i < 5; i++) {
      throttle.admit(`x-${i}`, '10.0.0.1');
      throttle.failed('10.0.0.1');
    }
    assert.equal(throttle.admit('dev-1', '10.0.0.1'), 'throttled_peer');
    assert.equal(throttle.admit('dev-1', '10.0.0.2'), 'ok');
    assert.equal(throttle.admit('dev-9', undefined), 'ok', 'no peerhost: per-id only');
  });

  it('throttles unknown ids like known ones and nothing when the rates are 0', () => {
    const off = new LoginThrottle({
      ...limits,
      perId: { burst: 1, perSecond: 0 },
      perPeer: { burst: 1, perSecond: 0 },
    });
    for (let i = 0; i < 10; i++) off.admit('dev-1', '10.0.0.1');
    assert.equal(off.admit('dev-1', '10.0.0.1'), 'ok');
  });

  it('keys peers by IPv4 address (also IPv4-mapped) and IPv6 /64', () => {
    assert.equal(peerKey('::ffff:10.1.2.3'), '10.1.2.3');
    assert.equal(peerKey('10.1.2.3'), '10.1.2.3');
    assert.equal(peerKey('2001:db8:0:1::5'), '2001:db8:0:1::/64');
    assert.equal(peerKey('2001:DB8:0:1:ffff:1:2:3'), '2001:db8:0:1::/64');
    assert.equal(peerKey('::1'), '0:0:0:0::/64');
    assert.equal(peerKey(''), undefined);
    assert.equal(peerKey(undefined), undefined);
  });
});
