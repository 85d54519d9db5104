import {
  DEAD_LETTER_BATCH_FORMAT,
  DeadLetterProperty,
  decodeDeadLetterBatch,
  RejectCode,
} from '@dmp/contracts';
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { toDeadLetterBatch, toPackedDeadLetter, type RefusedMessage } from './dead-letter';

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
const traceparent = '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01';

describe('toPackedDeadLetter', () => {
  it("keeps the raw payload, the reason and context as properties, the message's trace context", () => {
    const packed = toPackedDeadLetter(refused, traceparent);
    assert.equal(packed.code, RejectCode.MalformedPayload);
    assert.equal(packed.deviceId, 'dev-1');
    assert.deepEqual(packed.entry.payload, refused.payload);
    assert.deepEqual(packed.entry.properties, {
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
      traceparent,
    });
    assert.ok(packed.size > refused.payload.length + 200, `${packed.size} bytes counted`);
  });

  it('makes device-controlled text safe for properties', () => {
    const packed = toPackedDeadLetter({
      ...refused,
      topic: `devices/a\u0001b/tele\u0000metry${'x'.repeat(5_000)}`,
      deviceId: undefined,
      messageId: 'bad id\u0007',
      detail: 'metrics.\u0002: invalid metric name',
      code: 'DMP_ERR_SOMETHING ELSE',
    });
    const props = packed.entry.properties;
    // eslint-disable-next-line no-control-regex
    for (const value of Object.values(props)) assert.doesNotMatch(value, /[\u0000-\u001f\u007f-\u009f]/);
    assert.ok(props[DeadLetterProperty.sourceTopic].startsWith('devices/a\\u0001b/tele\\u0000metry'));
    assert.ok(props[DeadLetterProperty.sourceTopic].length <= 1024);
    assert.equal(props[DeadLetterProperty.sourceMessageId], undefined, 'an invalid message id is not kept');
    assert.equal(props[DeadLetterProperty.deviceId], undefined);
    assert.equal(props.traceparent, undefined);
    assert.equal(packed.deviceId, undefined);
  });
});

describe('toDeadLetterBatch', () => {
  it('packs entries into one message: batch format, code as tag and property, devices as keys', () => {
    const letters = [
      toPackedDeadLetter({ ...refused, code: RejectCode.UnknownDevice, deviceId: 'u-1' }),
      toPackedDeadLetter({
        ...refused,
        code: RejectCode.UnknownDevice,
        deviceId: 'u-2',
        payload: Buffer.alloc(0),
      }),
      toPackedDeadLetter({ ...refused, code: RejectCode.UnknownDevice, deviceId: 'u-1' }),
    ];
    const message = toDeadLetterBatch('dmp_dead_letter', 'dmp-mqtt-host-1', letters);
    assert.equal(message.topic, 'dmp_dead_letter');
    assert.equal(message.tag, RejectCode.UnknownDevice);
    assert.deepEqual(message.keys, ['u-1', 'u-2']);
    assert.equal(message.messageGroup, undefined, 'NORMAL topic: no message group');
    assert.deepEqual(message.properties, {
      [DeadLetterProperty.format]: DEAD_LETTER_BATCH_FORMAT,
      [DeadLetterProperty.count]: '3',
      [DeadLetterProperty.errorCode]: RejectCode.UnknownDevice,
      [DeadLetterProperty.source]: 'dmp-mqtt',
      [DeadLetterProperty.sourceInstance]: 'dmp-mqtt-host-1',
    });
    assert.deepEqual(
      decodeDeadLetterBatch(message.body),
      letters.map((l) => l.entry),
    );
  });

  it('gives a code that is not a plain code a generic tag, and caps the keys', () => {
    const letters = Array.from({ length: 40 }, (_, i) =>
      toPackedDeadLetter({ ...refused, code: 'DMP_ERR_SOMETHING ELSE', deviceId: `d-${i}` }),
    );
    const message = toDeadLetterBatch('dlq', 'i', letters);
    assert.equal(message.tag, 'DMP_ERR_REJECTED');
    assert.equal(message.properties![DeadLetterProperty.errorCode], 'DMP_ERR_SOMETHING ELSE');
    assert.equal(message.keys!.length, 32);
  });
});
