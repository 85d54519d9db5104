import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { backoffDelay } from '@dmp/flow';
import { consumerDeadLetterProperties, decideFailure } from './rocketmq.consumer-server';

const delayMs = (attempt: number) => backoffDelay(attempt, { baseMs: 1_000, maxMs: 60_000 });
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

describe('consumerDeadLetterProperties', () => {
  const message = {
    topic: 'dmp_telemetry_event',
    messageId: '01ORIGINAL',
    body: Buffer.from('x'),
    keys: [],
    messageGroup: 'shard-3',
    properties: { __SHARDINGKEY: 'shard-3', traceparent: 'tp', dmp_telemetry_format: 'pack' },
    deliveryAttempt: 1000,
  };

  it('keeps the original properties, names the origin, and drops system and trace properties', () => {
    const properties = consumerDeadLetterProperties(message, 'dmp_data', {
      code: 'DMP_ERR_STORAGE_UNAVAILABLE',
      text: 'ClickHouse away',
      reason: 'max_delivery_attempts',
    });
    assert.deepEqual(properties, {
      dmp_telemetry_format: 'pack',
      dmp_error_code: 'DMP_ERR_STORAGE_UNAVAILABLE',
      dmp_error_message: 'ClickHouse away',
      dmp_dead_letter_reason: 'max_delivery_attempts',
      dmp_source_topic: 'dmp_telemetry_event',
      dmp_source_message_id: '01ORIGINAL',
      dmp_consumer_group: 'dmp_data',
      dmp_delivery_attempt: '1000',
      dmp_source_message_group: 'shard-3',
    });
  });

  it('escapes the control characters RocketMQ refuses in a property (a multi-line ClickHouse error)', () => {
    const text =
      "Code: 60, e.displayText() = DB::Exception: Table x doesn't exist.\n\n0. clickhouse-server(StackTrace)";
    const properties = consumerDeadLetterProperties(message, 'dmp_data', { code: 'C', text, reason: 'r' });
    // eslint-disable-next-line no-control-regex
    assert.doesNotMatch(properties.dmp_error_message, /[\u0000-\u001f]/);
    assert.match(properties.dmp_error_message, /doesn't exist\.\\u000a\\u000a0\./);
    const long = consumerDeadLetterProperties(message, 'g', {
      code: 'C',
      text: 'x'.repeat(5_000),
      reason: 'r',
    });
    assert.ok(long.dmp_error_message.length <= 1024);
  });
});
