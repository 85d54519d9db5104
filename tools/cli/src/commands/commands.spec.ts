import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { CommandRecord } from '@dmp/contracts';
import { formatCommand, formatCommandList } from './commands';

const record: CommandRecord = {
  commandId: 'cmd-1',
  deviceId: 'dev-1',
  ruleId: 'door-open-light',
  name: 'light.set',
  paramsJson: '{"on":true}',
  state: 'failed',
  version: 3,
  ttlMs: 30_000,
  queuedAt: Date.UTC(2026, 11, 6, 12),
  sentAt: Date.UTC(2026, 11, 6, 12) + 5,
  expiresAt: Date.UTC(2026, 11, 6, 12) + 30_000,
  finishedAt: Date.UTC(2026, 11, 6, 12) + 40,
  sends: 1,
  resends: 0,
  reply: {
    status: 'error',
    code: 'E_SIMULATED',
    message: 'light.set failed',
    resultJson: '',
    at: Date.UTC(2026, 11, 6, 12) + 40,
  },
  traceId: 'abc',
  traceparent: '',
};

describe('dmp commands output', () => {
  it('lists commands one per line with their state and reply', () => {
    const text = formatCommandList([record]);
    const [head, line] = text.split('\n');
    assert.match(head, /^COMMAND\s+STATE\s+NAME\s+RULE\s+QUEUED\s+SENT\/RESENT\s+REPLY$/);
    assert.match(
      line,
      /^cmd-1\s+failed\s+light\.set\s+door-open-light\s+2026-12-06T12:00:00\.000Z\s+1\/0\s+error: E_SIMULATED: light\.set failed$/,
    );
    assert.equal(formatCommandList([]), 'no commands');
  });

  it('shows one command with its history when ClickHouse has it', () => {
    const text = formatCommand(record, [
      { version: 1, transition: 'queued', state: 'queued', ts_ms: record.queuedAt, detail: '' },
      {
        version: 3,
        transition: 'failed',
        state: 'failed',
        ts_ms: record.finishedAt,
        detail: 'error: E_SIMULATED',
      },
    ]);
    assert.match(text, /^state {5}failed$/m);
    assert.match(text, /^ {2}v3 .* failed {5}→ failed {2}\(error: E_SIMULATED\)$/m);
    assert.doesNotMatch(formatCommand(record, undefined), /history/);
  });
});
