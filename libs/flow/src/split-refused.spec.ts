import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { splitRefused } from './split-refused';

class Refused extends Error {}

/** A send that refuses any part containing a bad id, and fails transiently as `flaky` says. */
function sender(bad: number[], flaky: (part: readonly number[]) => boolean = () => false) {
  const sent: number[][] = [];
  const tried: number[][] = [];
  const send = (part: readonly number[]) => {
    tried.push([...part]);
    if (part.some((id) => bad.includes(id))) return Promise.reject(new Refused('bad item'));
    if (flaky(part)) return Promise.reject(new Error('not now'));
    sent.push([...part]);
    return Promise.resolve();
  };
  return { send, sent, tried };
}
const isRefusal = (error: unknown) => error instanceof Refused;
const range = (n: number) => Array.from({ length: n }, (_, i) => i);

describe('splitRefused', () => {
  it('sends a batch nobody refuses once, whole', async () => {
    const s = sender([]);
    assert.deepEqual(await splitRefused(range(8), s.send, isRefusal), []);
    assert.deepEqual(s.tried, [range(8)]);
  });

  it('bisects a refused batch until the culprit is alone; its neighbours are sent, in order', async () => {
    const s = sender([5]);
    const failed = await splitRefused(range(16), s.send, isRefusal);
    assert.deepEqual(
      failed.map((f) => ({ items: f.items, refused: f.refused })),
      [{ items: [5], refused: true }],
    );
    assert.deepEqual(s.sent.flat(), [0, 1, 2, 3, 4, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15]);
    // 1 whole + 2 per level of a 16-item bisection.
    assert.equal(s.tried.length, 1 + 2 * Math.log2(16));
  });

  it('isolates several culprits', async () => {
    const s = sender([0, 9]);
    const failed = await splitRefused(range(10), s.send, isRefusal);
    assert.deepEqual(
      failed.map((f) => f.items),
      [[0], [9]],
    );
    assert.equal(s.sent.flat().length, 8);
  });

  it('fails a part that fails for another reason without splitting it, and goes on', async () => {
    const s = sender([0], (part) => part.includes(3));
    const failed = await splitRefused(range(4), s.send, isRefusal);
    assert.deepEqual(
      failed.map((f) => ({ items: f.items, refused: f.refused, message: (f.error as Error).message })),
      [
        { items: [0], refused: true, message: 'bad item' },
        { items: [2, 3], refused: false, message: 'not now' },
      ],
    );
    assert.deepEqual(s.sent, [[1]]);
  });
});
