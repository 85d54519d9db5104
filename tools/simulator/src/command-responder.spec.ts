import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { behaviourOf, DEFAULT_RESPONDER, respond } from './command-responder';

const options = { ...DEFAULT_RESPONDER, lateMs: 5_000 };
const command = { commandId: 'cmd-1', name: 'light.set', expiresAt: 10_000 };

describe('simulated command replies', () => {
  it('answers ok at once, with an error at once, late, or never', () => {
    const none = new Map();
    assert.deepEqual(respond('ok', command, none, options, 1_000), {
      kind: 'reply',
      delayMs: 0,
      reply: { status: 'ok', result: { applied: 'light.set' } },
    });
    const error = respond('error', command, none, options, 1_000);
    assert.ok(error.kind === 'reply' && error.reply.status === 'error' && error.reply.code === 'E_SIMULATED');
    const late = respond('late', command, none, options, 1_000);
    assert.ok(late.kind === 'reply' && late.delayMs === 5_000);
    assert.deepEqual(respond('never', command, none, options, 1_000), {
      kind: 'ignore',
      reason: 'never answers',
    });
  });

  it('executes a command id once: a resend gets the same answer again', () => {
    const answered = new Map([['cmd-1', { status: 'error' as const, code: 'E_SIMULATED' }]]);
    assert.deepEqual(respond('ok', command, answered, options, 1_000), {
      kind: 'repeat',
      reply: { status: 'error', code: 'E_SIMULATED' },
    });
    assert.deepEqual(respond('late', command, new Map([['cmd-1', 'pending' as const]]), options, 1_000), {
      kind: 'ignore',
      reason: 'already answering',
    });
  });

  it('ignores stale commands and payloads that are no command', () => {
    assert.deepEqual(respond('ok', command, new Map(), options, 20_000), { kind: 'ignore', reason: 'stale' });
    assert.deepEqual(respond('ok', { name: 'x' }, new Map(), options, 1_000), {
      kind: 'ignore',
      reason: 'not a command',
    });
  });

  it('spreads a fleet over the behaviours by the configured shares, the same device always alike', () => {
    const counts = { ok: 0, error: 0, late: 0, never: 0 };
    const shares = { errorRatio: 0.1, lateRatio: 0.2, neverRatio: 0.05, lateMs: 1 };
    for (let i = 0; i < 10_000; i++) counts[behaviourOf(`sim-${i}`, shares)]++;
    assert.ok(Math.abs(counts.error - 1_000) < 150, `error ${counts.error}`);
    assert.ok(Math.abs(counts.late - 2_000) < 200, `late ${counts.late}`);
    assert.ok(Math.abs(counts.never - 500) < 100, `never ${counts.never}`);
    assert.equal(behaviourOf('sim-7', shares), behaviourOf('sim-7', shares));
  });
});
