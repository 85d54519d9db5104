import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { parseCommandReply } from './command-reply';

const topic = 'devices/dev-1/command/reply';
const json = (value: unknown) => Buffer.from(JSON.stringify(value));

describe('parseCommandReply', () => {
  it('takes the command id from the MQTT 5 correlation data first', () => {
    const parsed = parseCommandReply(
      topic,
      json({ status: 'ok', commandId: 'cmd-other', result: { speed: 3 } }),
      Buffer.from('cmd-1'),
    );
    assert.deepEqual(parsed, {
      ok: true,
      deviceId: 'dev-1',
      commandId: 'cmd-1',
      reply: { status: 'ok', commandId: 'cmd-other', result: { speed: 3 } },
    });
  });

  it('takes it from the payload for MQTT 3.1.1 devices', () => {
    const parsed = parseCommandReply(topic, json({ commandId: 'cmd-2', status: 'error', code: 'E_BUSY' }));
    assert.ok(parsed.ok);
    assert.equal(parsed.commandId, 'cmd-2');
    assert.equal(parsed.reply.code, 'E_BUSY');
  });

  it('says what is wrong with a malformed reply', () => {
    const problem = (t: string, payload: Buffer, cd?: Buffer) => {
      const parsed = parseCommandReply(t, payload, cd);
      assert.equal(parsed.ok, false);
      return (parsed as { problem: string }).problem;
    };
    assert.match(problem('devices/dev-1/command', json({ status: 'ok' })), /not a reply topic/);
    assert.match(problem('devices/bad id/command/reply', json({ status: 'ok' })), /not a reply topic/);
    assert.match(problem(topic, Buffer.from('{nope')), /not JSON/);
    assert.match(problem(topic, json({ status: 'done', commandId: 'c' })), /status/);
    assert.match(problem(topic, json({ status: 'ok' })), /no command id/);
    assert.match(problem(topic, json({ status: 'ok' }), Buffer.from('bad id!')), /not a command id/);
  });
});
