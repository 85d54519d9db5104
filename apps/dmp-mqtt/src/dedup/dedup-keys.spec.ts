import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { contentKey, dedupKeys, messageIdKey } from './dedup-keys';

const envelope = {
  deviceId: 'dev-1',
  messageId: 'm-1',
  kind: 'telemetry' as const,
  ts: 1_700_000_000_000,
  seq: 7 as number | undefined,
  metrics: { temperature: 21.5, door_open: false, mode: 'eco' },
};

describe('dedup keys', () => {
  it('keys message ids per device, unambiguously', () => {
    assert.equal(messageIdKey('dev-1', 'm-1'), 'dmp:dedup:id:dev-1/m-1');
    assert.notEqual(messageIdKey('a:b', 'c'), messageIdKey('a', 'b:c'));
  });

  it('hashes content regardless of metric order, message id or trace context', () => {
    const reordered = {
      ...envelope,
      messageId: 'm-2',
      metrics: { mode: 'eco', door_open: false, temperature: 21.5 },
    };
    assert.equal(contentKey(envelope), contentKey(reordered));
    assert.match(contentKey(envelope), /^dmp:dedup:content:dev-1\/[A-Za-z0-9_-]{32}$/);
  });

  it('tells different content apart: value, type, timestamp, kind, device', () => {
    const variants = [
      { ...envelope, metrics: { ...envelope.metrics, temperature: 21.6 } },
      { ...envelope, metrics: { ...envelope.metrics, door_open: 'false' } },
      { ...envelope, metrics: { ...envelope.metrics, door_open: 0 } },
      { ...envelope, ts: envelope.ts + 1 },
      { ...envelope, kind: 'snapshot' as const },
      { ...envelope, deviceId: 'dev-2' },
      { ...envelope, seq: 8 },
      { ...envelope, seq: undefined },
      { ...envelope, metrics: { temperature: 21.5, door_open: false } },
    ];
    const keys = new Set([contentKey(envelope), ...variants.map((v) => contentKey(v))]);
    assert.equal(keys.size, variants.length + 1);
  });

  it('checks only what has a window', () => {
    assert.deepEqual(
      dedupKeys(envelope, { messageIdWindowMs: 600_000, contentWindowMs: 5_000 }).map((k) => [
        k.kind,
        k.windowMs,
      ]),
      [
        ['message_id', 600_000],
        ['content', 5_000],
      ],
    );
    assert.deepEqual(dedupKeys(envelope, { messageIdWindowMs: 0, contentWindowMs: 0 }), []);
    assert.deepEqual(
      dedupKeys(envelope, { messageIdWindowMs: 0, contentWindowMs: 1 }).map((k) => k.kind),
      ['content'],
    );
  });
});
