import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { LeftBehind } from './left-behind';

describe('LeftBehind', () => {
  it("holds a device's later messages on the same connection behind the one left for redelivery", () => {
    const left = new LeftBehind();
    const first = new AbortController().signal;
    const second = new AbortController().signal;
    const registryBack = Promise.resolve();
    left.leave(first, 'a', registryBack);
    assert.equal(left.of(first, 'a'), registryBack);
    assert.equal(left.of(first, 'b'), undefined, 'other devices go on');
    assert.equal(
      left.of(second, 'a'),
      undefined,
      'the next connection starts afresh (the broker redelivers in order)',
    );
  });

  it('keeps the first reason a device was left behind', () => {
    const left = new LeftBehind();
    const connection = new AbortController().signal;
    const first = Promise.resolve();
    left.leave(connection, 'a', first);
    left.leave(connection, 'a', Promise.resolve());
    assert.equal(left.of(connection, 'a'), first);
  });
});
