import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { type ClaimState, decideArrival, decideLookup, decideSettle } from './dedup-claim';
import type { DedupKey } from './dedup-keys';

const id: DedupKey = { kind: 'message_id', key: 'dmp:dedup:id:d1/m1', windowMs: 60_000 };
const content: DedupKey = { kind: 'content', key: 'dmp:dedup:content:d1/x', windowMs: 5_000 };
const keys = [id, content];
const none = new Map<string, string>();

describe('decideArrival', () => {
  it('claims a message nothing is known of here', () => {
    assert.deepEqual(decideArrival({ keys, accepted: new Set(), pending: none }), { kind: 'claim' });
  });

  it('drops a message one of whose keys this replica accepted, before waiting for anything', () => {
    const pending = new Map([[id.key, 'first copy']]);
    assert.deepEqual(decideArrival({ keys, accepted: new Set([content.key]), pending }), {
      kind: 'duplicate',
      key: content,
    });
  });

  it('waits for a copy being handed off that shares any key', () => {
    const pending = new Map([[content.key, 'first copy']]);
    assert.deepEqual(decideArrival({ keys, accepted: new Set(), pending }), {
      kind: 'wait',
      claim: 'first copy',
    });
  });
});

describe('decideLookup', () => {
  it('drops a message with a key marked in Redis, naming the first such key', () => {
    assert.deepEqual(decideLookup(keys, [false, true]), { kind: 'duplicate', key: content });
  });

  it('forwards a message with no key marked, and one Redis could not check', () => {
    assert.deepEqual(decideLookup(keys, [false, false]), { kind: 'forward' });
    assert.deepEqual(decideLookup(keys, undefined), { kind: 'forward' });
  });
});

describe('decideSettle', () => {
  it('marks the keys only when dmp-kernel took the message, and only the first time', () => {
    const committed = decideSettle('pending', 'commit');
    assert.deepEqual(committed, { state: 'committed', unregister: true, mark: true });
    assert.deepEqual(decideSettle(committed.state, 'commit'), {
      state: 'committed',
      unregister: false,
      mark: false,
    });
    assert.deepEqual(decideSettle(committed.state, 'release'), {
      state: 'committed',
      unregister: false,
      mark: false,
    });
  });

  it('gives a released claim back without a mark: the redelivery is not a duplicate of it', () => {
    const released = decideSettle('pending', 'release');
    assert.deepEqual(released, { state: 'released', unregister: true, mark: false });
    assert.equal(decideSettle(released.state, 'commit').mark, false, 'too late to commit');
  });
});

describe('the protocol, two copies of one message in one replica', () => {
  /** The filter's state, driven only by the decisions. */
  function replica() {
    const accepted = new Set<string>();
    const pending = new Map<string, { state: ClaimState }>();
    return {
      accepted,
      pending,
      arrive: () => decideArrival({ keys, accepted, pending }),
      claim() {
        const claim = { state: 'pending' as ClaimState };
        for (const k of keys) pending.set(k.key, claim);
        return claim;
      },
      settle(claim: { state: ClaimState }, outcome: 'commit' | 'release') {
        const next = decideSettle(claim.state, outcome);
        claim.state = next.state;
        if (next.unregister) for (const k of keys) pending.delete(k.key);
        if (next.mark) for (const k of keys) accepted.add(k.key);
      },
    };
  }

  it('lets the second copy through when the first was not taken, and drops it when it was', () => {
    const r = replica();
    assert.equal(r.arrive().kind, 'claim');
    const first = r.claim();
    assert.equal(r.arrive().kind, 'wait', 'the second copy waits for the first');
    r.settle(first, 'release');
    assert.equal(r.arrive().kind, 'claim', 'the hand-off failed: the copy goes on itself');
    const second = r.claim();
    r.settle(second, 'commit');
    assert.equal(r.arrive().kind, 'duplicate', 'a third copy is dropped');
  });
});
