import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { commandEventSchema, type CommandEvent } from '@dmp/contracts';
import { toCommandRows } from './command-rows';

const event: CommandEvent = commandEventSchema.parse({
  eventId: 'cmd-1:3',
  transition: 'failed',
  ts: 1_800_000_002_500,
  detail: 'error: E_BUSY: motor stalled',
  command: {
    commandId: 'cmd-1',
    deviceId: 'dev-1',
    ruleId: 'too-hot',
    name: 'fan.set',
    paramsJson: '{"speed":3}',
    state: 'failed',
    version: 3,
    ttlMs: 30_000,
    queuedAt: 1_800_000_000_000,
    sentAt: 1_800_000_001_000,
    expiresAt: 1_800_000_030_000,
    finishedAt: 1_800_000_002_500,
    sends: 1,
    resends: 0,
    reply: {
      status: 'error',
      code: 'E_BUSY',
      message: 'motor stalled',
      resultJson: '',
      at: 1_800_000_002_500,
    },
    traceId: '0af7651916cd43dd8448eb211c80319c',
  },
});

describe('command rows', () => {
  it('turns a command event into its latest-state row and its transition row', () => {
    const { command, event: row } = toCommandRows(event, 1_800_000_003_000);
    assert.equal(command.state, 'failed');
    assert.equal(command.version, 3);
    assert.equal(command.queued_at, 1_800_000_000);
    assert.equal(command.reply_code, 'E_BUSY');
    assert.equal(command.replied_at_ms, 1_800_000_002_500);
    assert.equal(command.updated_at_ms, 1_800_000_002_500);
    assert.deepEqual(
      [row.event_id, row.transition, row.state, row.version, row.ts, row.detail],
      ['cmd-1:3', 'failed', 'failed', 3, 1_800_000_002, 'error: E_BUSY: motor stalled'],
    );
  });

  it('leaves the reply columns empty before the device answered', () => {
    const { command } = toCommandRows({
      ...event,
      command: { ...event.command, state: 'sent', reply: null },
    });
    assert.deepEqual(
      [command.reply_status, command.reply_code, command.reply_json, command.replied_at_ms],
      ['', '', '', 0],
    );
  });
});
