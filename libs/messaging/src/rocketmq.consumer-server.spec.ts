import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { decideFailure, redeliveryDelay } from './rocketmq.consumer-server';

const delayMs = (attempt: number) => redeliveryDelay(attempt, 1_000, 60_000);
const facts = (overrides: Partial<Parameters<typeof decideFailure>[0]>) => ({
  retryable: true,
  attempt: 1,
  maxDeliveryAttempts: 5,
  hasDeadLetterTopic: true,
  delayMs,
  ...overrides,
});

describe('decideFailure', () => {
  it('redelivers a retryable failure with a doubling delay until the attempt limit, then dead-letters it', () => {
    assert.deepEqual(decideFailure(facts({ attempt: 1 })), { action: 'redeliver', delayMs: 1_000 });
    assert.deepEqual(decideFailure(facts({ attempt: 4 })), { action: 'redeliver', delayMs: 8_000 });
    assert.deepEqual(decideFailure(facts({ attempt: 5 })), {
      action: 'dead_letter',
      reason: 'max_delivery_attempts',
    });
  });

  it('dead-letters a non-retryable failure at once', () => {
    assert.deepEqual(decideFailure(facts({ retryable: false })), {
      action: 'dead_letter',
      reason: 'non_retryable',
    });
  });

  it('never gives up on a message when there is no dead-letter topic to keep it', () => {
    for (const retryable of [true, false])
      for (const attempt of [1, 5, 1_000_000])
        assert.equal(
          decideFailure(facts({ hasDeadLetterTopic: false, retryable, attempt })).action,
          'redeliver',
          `retryable ${retryable}, attempt ${attempt}`,
        );
    assert.deepEqual(decideFailure(facts({ hasDeadLetterTopic: false, attempt: 40 })), {
      action: 'redeliver',
      delayMs: 60_000,
    });
  });
});
