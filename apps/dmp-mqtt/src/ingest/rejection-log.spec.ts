import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { RejectionLogLimiter, type SuppressedRejections } from './rejection-log';

describe('RejectionLogLimiter', () => {
  it('logs the first refusals of a window per reason, sums up the rest when the window ends', () => {
    let now = 1_000;
    const summaries: SuppressedRejections[] = [];
    const limiter = new RejectionLogLimiter(
      { linesPerWindow: 3, windowMs: 10_000 },
      (s) => summaries.push(s),
      () => now,
    );
    const admitted = Array.from({ length: 1_000 }, (_, i) =>
      limiter.admit('DMP_ERR_UNKNOWN_DEVICE', `u-${i % 40}`),
    );
    assert.equal(admitted.filter(Boolean).length, 3);
    assert.equal(limiter.admit('DMP_ERR_MALFORMED_PAYLOAD', 'd'), true, 'each reason has its own budget');
    limiter.flush();
    assert.deepEqual(summaries, [], 'nothing before the window ends');

    now += 10_000;
    limiter.flush();
    assert.deepEqual(summaries, [
      {
        reason: 'DMP_ERR_UNKNOWN_DEVICE',
        count: 997,
        devices: 40,
        sample: ['u-3', 'u-4', 'u-5', 'u-6', 'u-7'],
        windowMs: 10_000,
      },
    ]);
    assert.equal(limiter.admit('DMP_ERR_UNKNOWN_DEVICE', 'u-1'), true, 'a new window, a new budget');
    limiter.flush(true);
    assert.equal(summaries.length, 1, 'no summary of a window that held nothing back');
  });

  it('reports a window that ended when the next refusal of its reason arrives', () => {
    let now = 0;
    const summaries: SuppressedRejections[] = [];
    const limiter = new RejectionLogLimiter(
      { linesPerWindow: 1, windowMs: 100 },
      (s) => summaries.push(s),
      () => now,
    );
    limiter.admit('R', 'a');
    limiter.admit('R', 'b');
    now = 150;
    assert.equal(limiter.admit('R', 'c'), true);
    assert.deepEqual(
      summaries.map((s) => [s.reason, s.count, s.sample]),
      [['R', 1, ['b']]],
    );
    limiter.flush(true);
  });
});
