import { DeadLetterProperty, deadLetterPayload, RejectCode } from '@dmp/contracts';
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { toDeadLetter, type RefusedMessage } from './dead-letter';

const refused: RefusedMessage = {
  payload: Buffer.from('{"messageId":'),
  topic: 'devices/dev-1/telemetry',
  deviceId: 'dev-1',
  messageId: 'm-1',
  contentType: 'application/json',
  receivedAt: 1_700_000_000_123.7,
  code: RejectCode.MalformedPayload,
  detail: 'not JSON: Unexpected end of JSON input',
  instance: 'dmp-mqtt-host-1',
};

describe('toDeadLetter', () => {
  it('keeps the raw payload as the body, the reason and context as properties, code as tag, ids as keys', () => {
    const letter = toDeadLetter('dmp_dead_letter', refused);
    assert.equal(letter.topic, 'dmp_dead_letter');
    assert.deepEqual(letter.body, refused.payload);
    assert.equal(letter.tag, RejectCode.MalformedPayload);
    assert.deepEqual(letter.keys, ['dev-1', 'm-1']);
    assert.equal(letter.messageGroup, undefined, 'NORMAL topic: no message group');
    assert.deepEqual(letter.properties, {
      [DeadLetterProperty.errorCode]: RejectCode.MalformedPayload,
      [DeadLetterProperty.errorMessage]: 'not JSON: Unexpected end of JSON input',
      [DeadLetterProperty.source]: 'dmp-mqtt',
      [DeadLetterProperty.sourceInstance]: 'dmp-mqtt-host-1',
      [DeadLetterProperty.sourceTopic]: 'devices/dev-1/telemetry',
      [DeadLetterProperty.receivedAt]: '1700000000123',
      [DeadLetterProperty.contentType]: 'application/json',
      [DeadLetterProperty.payloadSize]: String(refused.payload.length),
      [DeadLetterProperty.deviceId]: 'dev-1',
      [DeadLetterProperty.sourceMessageId]: 'm-1',
    });
  });

  it('sends an empty payload as one filler byte that reads back as empty', () => {
    const letter = toDeadLetter('dlq', { ...refused, payload: Buffer.alloc(0) });
    assert.equal(letter.body.length, 1);
    assert.equal(deadLetterPayload(letter.body, letter.properties!).length, 0);
  });

  it('makes device-controlled text safe for RocketMQ properties and keys', () => {
    const letter = toDeadLetter('dlq', {
      ...refused,
      topic: `devices/a\u0001b/tele\u0000metry${'x'.repeat(5_000)}`,
      deviceId: undefined,
      messageId: 'bad id\u0007',
      detail: 'metrics.\u0002: invalid metric name',
      code: 'DMP_ERR_SOMETHING ELSE',
    });
    const props = letter.properties!;
    // eslint-disable-next-line no-control-regex
    for (const value of Object.values(props)) assert.doesNotMatch(value, /[\u0000-\u001f\u007f-\u009f]/);
    assert.ok(props[DeadLetterProperty.sourceTopic].startsWith('devices/a\\u0001b/tele\\u0000metry'));
    assert.ok(props[DeadLetterProperty.sourceTopic].length <= 1024);
    assert.equal(props[DeadLetterProperty.sourceMessageId], undefined, 'an invalid message id is not kept');
    assert.equal(props[DeadLetterProperty.deviceId], undefined);
    assert.equal(letter.keys, undefined);
    assert.equal(letter.tag, 'DMP_ERR_REJECTED');
    assert.equal(props[DeadLetterProperty.errorCode], 'DMP_ERR_SOMETHING ELSE');
  });
});
