import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { AbortWatch } from './abort-watch';

describe('AbortWatch', () => {
  it('hands the items still watched to one callback per aborted signal', () => {
    const seen: [unknown, string[]][] = [];
    const watch = new AbortWatch<string>((signal, items) => seen.push([signal.reason, [...items]]));
    const first = new AbortController();
    const second = new AbortController();
    watch.add(first.signal, 'a');
    watch.add(first.signal, 'b');
    watch.add(second.signal, 'c');
    watch.delete(first.signal, 'a');
    watch.delete(undefined, 'b');
    first.abort('gone');
    first.abort('again');
    assert.deepEqual(seen, [['gone', ['b']]]);
    watch.delete(second.signal, 'c');
    second.abort('unwatched');
    assert.equal(seen.length, 1, 'no listener is left once its last item is no longer watched');
  });
});
