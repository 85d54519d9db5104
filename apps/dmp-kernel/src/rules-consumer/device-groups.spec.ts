import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { groupByDevice } from './device-groups';

describe('groupByDevice', () => {
  it('groups indexes per device in batch order, devices in order of first appearance', () => {
    const ids = ['a', 'b', 'a', 'c', 'b', 'a'].map((deviceId) => ({ deviceId }));
    assert.deepEqual(groupByDevice(ids), [[0, 2, 5], [1, 4], [3]]);
  });

  it('returns nothing for an empty batch', () => {
    assert.deepEqual(groupByDevice([]), []);
  });
});
