import { DEAD_LETTER_SOURCE_KERNEL_OUTBOX, DeadLetterProperty } from '@dmp/contracts';
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { OutboxEntry } from './outbox';
import { decideOutbox, outboxDeadLetter, outboxEntryOf, webhookOutboxResult } from './outbox-policy';

const policy = { baseMs: 1_000, maxMs: 8_000, maxAttempts: 5 };
const failed = { kind: 'failed', code: 'DMP_ERR_COMMAND_UNAVAILABLE', message: 'no PUBACK' } as const;
const command: OutboxEntry = {
  id: 'cmd:cmd-abc',
  kind: 'command',
  command: {
    kind: 'command',
    ruleId: 'door',
    trigger: 'match',
    deviceId: 'd\u00011',
    commandId: 'cmd-abc',
    name: 'light.set',
    params: { on: true },
    ts: 1,
  },
};

describe('outbox policy', () => {
  it('completes what is done, retries failures with the doubling backoff, dead-letters at the limit', () => {
    assert.deepEqual(decideOutbox({ kind: 'done' }, 0, policy), { kind: 'complete' });
    assert.deepEqual(
      [1, 2, 3, 4].map((attempts) => decideOutbox(failed, attempts, policy)),
      [1_000, 2_000, 4_000, 8_000].map((delayMs) => ({ kind: 'retry', delayMs })),
    );
    assert.deepEqual(decideOutbox(failed, 5, policy), {
      kind: 'dead_letter',
      reason: 'max_delivery_attempts',
    });
  });

  it('dead-letters a refusal at its first attempt', () => {
    const refused = webhookOutboxResult('rejected', 'whk-1', 'DMP_ERR_WEBHOOK_EGRESS');
    assert.equal(refused.kind, 'refused');
    assert.deepEqual(decideOutbox(refused, 1, policy), { kind: 'dead_letter', reason: 'non_retryable' });
    assert.equal(webhookOutboxResult('failed', 'whk-1', 'X').kind, 'failed');
    assert.equal(webhookOutboxResult('dropped', 'whk-1', 'X').kind, 'failed');
  });

  it('writes a dead letter that carries the entry itself, for a replay under the same id', () => {
    const letter = outboxDeadLetter(command, {
      ...failed,
      reason: 'max_delivery_attempts',
      attempts: 5,
      instance: 'kernel-1',
      now: 1_700_000_000_000,
    });
    assert.deepEqual(outboxEntryOf(letter.body), command);
    const p = letter.properties;
    assert.equal(p[DeadLetterProperty.source], DEAD_LETTER_SOURCE_KERNEL_OUTBOX);
    assert.equal(p[DeadLetterProperty.sourceMessageId], 'cmd:cmd-abc');
    assert.equal(p[DeadLetterProperty.deviceId], 'd\\u00011', 'control characters escaped for RocketMQ');
    assert.equal(p[DeadLetterProperty.sourceTopic], 'devices/d\\u00011/command');
    assert.equal(p[DeadLetterProperty.deliveryAttempt], '5');
    assert.equal(p[DeadLetterProperty.payloadSize], String(letter.body.length));
    assert.throws(
      () => outboxEntryOf(Buffer.from('{"id":"x","kind":"telemetry"}')),
      /not a dmp-kernel outbox entry/,
    );
  });
});
