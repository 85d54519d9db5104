import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { advanceCursor, cursorAt, planPass } from './aggregation-cursor';

const NOW = 1_767_225_600;
const timing = { latenessMs: 30_000, requestTimeoutMs: 10_000 };

describe('planPass', () => {
  it('reads up to the marks every acknowledged insert has made visible, and no lagging replica', () => {
    assert.deepEqual(planPass({ now: NOW, cursor: NOW - 600, ...timing }), {
      kind: 'read',
      until: NOW - 11,
      watermark: NOW - 60 - 30,
      recentFrom: NOW - 2 * 86_400,
      maxReplicaDelaySeconds: 11,
    });
  });

  it('rounds the lateness and the timeout up to whole seconds', () => {
    const plan = planPass({ now: NOW, cursor: 0, latenessMs: 1, requestTimeoutMs: 1 });
    assert.equal(plan.kind === 'read' && plan.until, NOW - 2);
    assert.equal(plan.kind === 'read' && plan.watermark, NOW - 61);
  });

  it('does nothing while the cursor is at or past what has settled', () => {
    assert.deepEqual(planPass({ now: NOW, cursor: NOW - 11, ...timing }), { kind: 'idle' });
    assert.deepEqual(planPass({ now: NOW, cursor: NOW, ...timing }), { kind: 'idle' });
  });
});

describe('advanceCursor', () => {
  it('moves past each page read, storing it', () => {
    const first = advanceCursor(cursorAt(100), { end: 200, heldFrom: Infinity, marks: 5 });
    assert.deepEqual(first, { state: { cursor: 200, held: Infinity }, store: true });
    const second = advanceCursor(first.state, { end: 300, heldFrom: Infinity, marks: 1 });
    assert.equal(second.state.cursor, 300);
  });

  it('stops at the first mark of a minute not due yet, on this page or an earlier one', () => {
    const first = advanceCursor(cursorAt(100), { end: 200, heldFrom: 150, marks: 5 });
    assert.deepEqual(first, { state: { cursor: 150, held: 150 }, store: true });
    const second = advanceCursor(first.state, { end: 300, heldFrom: 250, marks: 5 });
    assert.deepEqual(second, { state: { cursor: 150, held: 150 }, store: false }, 'held: nothing to store');
  });

  it('stores nothing for a page without marks, though the cursor moves (an empty log)', () => {
    assert.deepEqual(advanceCursor(cursorAt(100), { end: 200, heldFrom: Infinity, marks: 0 }), {
      state: { cursor: 200, held: Infinity },
      store: false,
    });
  });
});
