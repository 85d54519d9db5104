import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { CommandRecord } from '@dmp/contracts';
import {
  decideCommand,
  messageExpirySeconds,
  type CommandDecision,
  type CommandFact,
} from './command-lifecycle';
import type { PlannedCommand } from './engine';

const command: PlannedCommand = {
  kind: 'command',
  ruleId: 'too-hot',
  trigger: 'raise',
  deviceId: 'dev-1',
  commandId: 'cmd-0123456789abcdef0123',
  name: 'fan.set',
  params: { speed: 3 },
  ts: 1_000,
};

function record(decision: CommandDecision): CommandRecord {
  assert.ok(decision.kind === 'apply', JSON.stringify(decision));
  return decision.record;
}

/** Runs facts from nothing, returning the decisions (each applied one feeds the next). */
function run(...facts: CommandFact[]): { decisions: CommandDecision[]; last?: CommandRecord } {
  let current: CommandRecord | undefined;
  const decisions = facts.map((fact) => {
    const decision = decideCommand(current, fact);
    if (decision.kind === 'apply') current = decision.record;
    return decision;
  });
  return { decisions, last: current };
}

const queue: CommandFact = { kind: 'queue', command, ttlMs: 5_000, traceId: 'abc', now: 1_000 };

describe('the command lifecycle', () => {
  it('queues a command once, with its time to live counted from then', () => {
    const { decisions, last } = run(queue, { ...queue, now: 1_500 });
    assert.equal(last?.state, 'queued');
    assert.equal(last?.version, 1);
    assert.equal(last?.expiresAt, 6_000);
    assert.equal(last?.paramsJson, '{"speed":3}');
    assert.deepEqual(decisions[1], { kind: 'ignore', reason: 'duplicate' });
  });

  it('goes queued → sent → replied on an ok reply, one version per transition', () => {
    const { decisions, last } = run(
      queue,
      { kind: 'sent', now: 1_100 },
      { kind: 'reply', status: 'ok', result: { speed: 3 }, now: 1_300 },
    );
    assert.deepEqual(
      decisions.map((d) =>
        d.kind === 'apply' ? [d.event.transition, d.record.version, d.event.eventId] : d.kind,
      ),
      [
        ['queued', 1, 'cmd-0123456789abcdef0123:1'],
        ['sent', 2, 'cmd-0123456789abcdef0123:2'],
        ['replied', 3, 'cmd-0123456789abcdef0123:3'],
      ],
    );
    assert.equal(last?.state, 'replied');
    assert.equal(last?.sentAt, 1_100);
    assert.equal(last?.sends, 1);
    assert.equal(last?.finishedAt, 1_300);
    assert.deepEqual(last?.reply, {
      status: 'ok',
      code: '',
      message: '',
      resultJson: '{"speed":3}',
      at: 1_300,
    });
  });

  it('fails on an error reply and keeps what the device said', () => {
    const { decisions, last } = run(
      queue,
      { kind: 'sent', now: 1_100 },
      { kind: 'reply', status: 'error', code: 'E_BUSY', message: 'motor stalled', now: 1_200 },
    );
    assert.equal(last?.state, 'failed');
    assert.equal(last?.reply?.code, 'E_BUSY');
    const event = decisions[2];
    assert.ok(event.kind === 'apply');
    assert.equal(event.event.detail, 'error: E_BUSY: motor stalled');
  });

  it('ignores duplicate replies and a late PUBACK record', () => {
    const { decisions, last } = run(
      queue,
      { kind: 'reply', status: 'ok', now: 1_050 }, // overtook the `sent` record
      { kind: 'sent', now: 1_060 },
      { kind: 'reply', status: 'error', now: 1_070 },
    );
    assert.equal(last?.state, 'replied');
    assert.equal(last?.sends, 1, 'counted as sent once');
    assert.deepEqual(decisions.slice(2), [
      { kind: 'ignore', reason: 'final' },
      { kind: 'ignore', reason: 'duplicate' },
    ]);
  });

  it('expires only once the time to live is over, and records a late reply without leaving expired', () => {
    const { decisions, last } = run(
      queue,
      { kind: 'sent', now: 1_100 },
      { kind: 'expire', now: 5_999 },
      { kind: 'expire', now: 6_000 },
      { kind: 'reply', status: 'ok', now: 7_000 },
      { kind: 'expire', now: 8_000 },
    );
    assert.deepEqual(decisions[2], { kind: 'ignore', reason: 'not_due' });
    assert.ok(decisions[3].kind === 'apply' && decisions[3].event.transition === 'expired');
    assert.ok(decisions[4].kind === 'apply' && decisions[4].event.transition === 'late_reply');
    assert.deepEqual(decisions[5], { kind: 'ignore', reason: 'final' });
    assert.equal(last?.state, 'expired');
    assert.equal(last?.reply, null);
    assert.equal(last?.version, 4);
  });

  it('resends a failed or expired command under the same id, a bounded number of times', () => {
    const failed = record(
      run(queue, { kind: 'sent', now: 1_100 }, { kind: 'reply', status: 'error', now: 1_200 }).decisions.at(
        -1,
      )!,
    );
    const again = decideCommand(failed, { kind: 'resend', maxResends: 1, now: 10_000 });
    const resent = record(again);
    assert.equal(resent.commandId, command.commandId);
    assert.equal(resent.state, 'queued');
    assert.equal(resent.resends, 1);
    assert.equal(resent.expiresAt, 15_000);
    assert.equal(resent.reply, null);
    assert.ok(again.kind === 'apply' && again.event.transition === 'resent');
    const sentAgain = record(decideCommand(resent, { kind: 'sent', now: 10_100 }));
    assert.equal(sentAgain.sends, 2);
    const refail = record(decideCommand(sentAgain, { kind: 'reply', status: 'error', now: 10_200 }));
    const refused = decideCommand(refail, { kind: 'resend', maxResends: 1, now: 11_000 });
    assert.equal(refused.kind, 'refuse');
  });

  it('refuses to resend a command answered ok, one under way, or an unknown one', () => {
    const replied = run(queue, { kind: 'reply', status: 'ok', now: 1_050 }).last!;
    assert.equal(decideCommand(replied, { kind: 'resend', maxResends: 3, now: 2_000 }).kind, 'refuse');
    const queued = run(queue).last!;
    assert.equal(decideCommand(queued, { kind: 'resend', maxResends: 3, now: 2_000 }).kind, 'refuse');
    assert.equal(decideCommand(undefined, { kind: 'resend', maxResends: 3, now: 2_000 }).kind, 'refuse');
    assert.deepEqual(decideCommand(undefined, { kind: 'reply', status: 'ok', now: 2_000 }), {
      kind: 'ignore',
      reason: 'unknown',
    });
  });

  it('gives a command sent now the rest of its time to live as MQTT message expiry, at least 1 s', () => {
    assert.equal(messageExpirySeconds({ expiresAt: 6_000 }, 1_000), 5);
    assert.equal(messageExpirySeconds({ expiresAt: 6_000 }, 5_500), 1);
    assert.equal(messageExpirySeconds({ expiresAt: 6_000 }, 9_000), 1);
  });
});
