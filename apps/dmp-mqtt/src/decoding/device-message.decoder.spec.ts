import { RejectCode, TELEMETRY_PROTO_PACKAGE, TELEMETRY_PROTO_PATH } from '@dmp/contracts';
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import protobuf from 'protobufjs';
import {
  DeviceMessageDecoder,
  parseTopic,
  payloadFormatOf,
  PROTOBUF_CONTENT_TYPE,
  type DecodeInput,
  type DecodeResult,
} from './device-message.decoder';

const DevicePayload = protobuf
  .loadSync(TELEMETRY_PROTO_PATH)
  .lookupType(`${TELEMETRY_PROTO_PACKAGE}.DevicePayload`);
const encodeProto = (fields: Record<string, unknown>) =>
  Buffer.from(DevicePayload.encode(DevicePayload.fromObject(fields)).finish());
const json = (value: unknown) => Buffer.from(JSON.stringify(value));

const decoder = new DeviceMessageDecoder(1024);
const base: DecodeInput = {
  deviceId: 'dev-1',
  kind: 'telemetry',
  payload: Buffer.alloc(0),
  receivedAt: 1_700_000_000_123.4,
};
const good = {
  messageId: 'dev-1-7',
  ts: 1_700_000_000_000,
  seq: 7,
  metrics: { temperature: 21.5, door_open: false, mode: 'eco' },
};

function rejected(result: DecodeResult) {
  assert.equal(result.ok, false, 'expected a rejection');
  return result.rejection;
}
function accepted(result: DecodeResult) {
  assert.equal(result.ok, true, `expected success, got ${JSON.stringify(result)}`);
  return result.message;
}

describe('DeviceMessageDecoder', () => {
  it('decodes a JSON payload into an envelope with the topic device id and channel', () => {
    const message = accepted(decoder.decode({ ...base, payload: json(good) }));
    assert.equal(message.format, 'json');
    assert.deepEqual(message.envelope, {
      deviceId: 'dev-1',
      messageId: 'dev-1-7',
      kind: 'telemetry',
      ts: 1_700_000_000_000,
      seq: 7,
      metrics: { temperature: 21.5, door_open: false, mode: 'eco' },
      receivedAt: 1_700_000_000_123,
    });
  });

  it('accepts a payload that repeats its own device id, and keeps a top-level traceparent', () => {
    const traceparent = '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01';
    const message = accepted(
      decoder.decode({
        ...base,
        kind: 'snapshot',
        payload: json({ ...good, deviceId: 'dev-1', traceparent }),
      }),
    );
    assert.equal(message.envelope.kind, 'snapshot');
    assert.equal(message.traceparent, traceparent);
  });

  it('decodes a Protobuf DevicePayload chosen by the content type', () => {
    const payload = encodeProto({
      deviceId: 'dev-1',
      messageId: 'dev-1-8',
      ts: 1_700_000_000_500,
      seq: 8,
      metrics: { voltage: { number: 3.3 }, door_open: { flag: true }, firmware: { text: '1.2.3' } },
      traceparent: '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01',
    });
    const message = accepted(decoder.decode({ ...base, payload, contentType: PROTOBUF_CONTENT_TYPE }));
    assert.equal(message.format, 'protobuf');
    assert.deepEqual(message.envelope.metrics, { voltage: 3.3, door_open: true, firmware: '1.2.3' });
    assert.equal(message.envelope.seq, 8);
    assert.equal(message.envelope.ts, 1_700_000_000_500);
    assert.equal(message.traceparent, '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01');
  });

  it('treats proto3 defaults as absent (no device id, seq 0)', () => {
    const payload = encodeProto({ messageId: 'm', ts: 1_700_000_000_000, metrics: { t: { number: 0 } } });
    const message = accepted(decoder.decode({ ...base, payload, contentType: 'application/protobuf' }));
    assert.equal(message.envelope.seq, undefined);
    assert.deepEqual(message.envelope.metrics, { t: 0 });
  });

  it('rejects oversized payloads before parsing them', () => {
    const rejection = rejected(decoder.decode({ ...base, payload: Buffer.alloc(1025, '{') }));
    assert.equal(rejection.code, RejectCode.PayloadTooLarge);
  });

  it('rejects what is not JSON, invalid UTF-8, or not a DevicePayload as malformed', () => {
    assert.equal(
      rejected(decoder.decode({ ...base, payload: Buffer.from('{"messageId":') })).code,
      RejectCode.MalformedPayload,
    );
    assert.equal(
      rejected(decoder.decode({ ...base, payload: Buffer.from([0x7b, 0xff, 0x7d]) })).code,
      RejectCode.MalformedPayload,
    );
    const notProto = Buffer.from([0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f]);
    assert.equal(
      rejected(decoder.decode({ ...base, payload: notProto, contentType: PROTOBUF_CONTENT_TYPE })).code,
      RejectCode.MalformedPayload,
    );
  });

  it('rejects an unsupported content type as malformed', () => {
    const rejection = rejected(decoder.decode({ ...base, payload: json(good), contentType: 'text/csv' }));
    assert.equal(rejection.code, RejectCode.MalformedPayload);
    assert.match(rejection.detail, /text\/csv/);
  });

  it('rejects payloads that break the schema as invalid, keeping what can be read for the log', () => {
    const cases: unknown[] = [
      { ...good, ts: 'yesterday' },
      { ...good, metrics: { 'bad name!': 1 } },
      { ...good, unexpected: true },
      { ...good, messageId: 'has spaces' },
      [good],
    ];
    for (const payload of cases) {
      assert.equal(
        rejected(decoder.decode({ ...base, payload: json(payload) })).code,
        RejectCode.InvalidPayload,
      );
    }
    const rejection = rejected(decoder.decode({ ...base, payload: json({ ...good, ts: -1 }) }));
    assert.equal(rejection.messageId, 'dev-1-7');
    assert.match(rejection.detail, /^ts: /);
    const noValue = encodeProto({ messageId: 'm', ts: 1_700_000_000_000, metrics: { t: {} } });
    assert.equal(
      rejected(decoder.decode({ ...base, payload: noValue, contentType: PROTOBUF_CONTENT_TYPE })).code,
      RejectCode.InvalidPayload,
    );
  });

  it('refuses a metric named __proto__ instead of dropping it (JSON and Protobuf)', () => {
    // zod's record skips a __proto__ key: the message was stored without that metric, or with none.
    for (const metrics of [{ t: 1 }, {}]) {
      const text = `{"messageId":"m1","ts":1700000000000,"metrics":{"__proto__":2${metrics.t ? ',"t":1' : ''}}}`;
      const viaJson = rejected(decoder.decode({ ...base, payload: Buffer.from(text) }));
      assert.equal(viaJson.code, RejectCode.InvalidPayload, text);
      assert.match(viaJson.detail, /__proto__/);
    }
    const viaProto = rejected(
      decoder.decode({
        ...base,
        contentType: PROTOBUF_CONTENT_TYPE,
        payload: encodeProto({
          messageId: 'm1',
          ts: 1,
          metrics: { ['__proto__']: { number: 2 }, t: { number: 1 } },
        }),
      }),
    );
    assert.equal(viaProto.code, RejectCode.InvalidPayload);
    // Other Object.prototype names are plain (invalid or valid) metric names.
    const constructorName = decoder.decode({
      ...base,
      payload: json({ ...good, metrics: { constructor: 1 } }),
    });
    assert.deepEqual(accepted(constructorName).envelope.metrics, { constructor: 1 });
  });

  it('refuses text with a lone surrogate (not Unicode text, no UTF-8 for it), keeps surrogate pairs', () => {
    for (const escape of ['\\ud800', '\\udc00', 'a\\ud83d', '\\ude00b']) {
      const text = `{"messageId":"m1","ts":1700000000000,"metrics":{"t":"${escape}"}}`;
      const refusal = rejected(decoder.decode({ ...base, payload: Buffer.from(text) }));
      assert.equal(refusal.code, RejectCode.InvalidPayload, text);
    }
    const pair = `{"messageId":"m1","ts":1700000000000,"metrics":{"t":"\\ud83d\\ude00"}}`;
    assert.deepEqual(accepted(decoder.decode({ ...base, payload: Buffer.from(pair) })).envelope.metrics, {
      t: '😀',
    });
  });

  it('rejects a payload naming another device than its topic as spoofed', () => {
    const rejection = rejected(decoder.decode({ ...base, payload: json({ ...good, deviceId: 'dev-2' }) }));
    assert.equal(rejection.code, RejectCode.SpoofedDevice);
    const proto = encodeProto({
      deviceId: 'dev-2',
      messageId: 'm',
      ts: 1_700_000_000_000,
      metrics: { t: { number: 1 } },
    });
    assert.equal(
      rejected(decoder.decode({ ...base, payload: proto, contentType: PROTOBUF_CONTENT_TYPE })).code,
      RejectCode.SpoofedDevice,
    );
  });
});

describe('parseTopic', () => {
  it('accepts device channels and rejects other topics as DMP_ERR_WRONG_TOPIC', () => {
    assert.deepEqual(parseTopic('devices/dev-1/event'), {
      ok: true,
      topic: { deviceId: 'dev-1', channel: 'event' },
    });
    assert.deepEqual(parseTopic('devices/dev-1/heartbeat'), {
      ok: true,
      topic: { deviceId: 'dev-1', channel: 'heartbeat' },
    });
    for (const topic of [
      'devices/dev 1/telemetry',
      'devices/dev-1/other',
      'devices/dev-1',
      `devices/${'x'.repeat(65)}/event`,
    ]) {
      const result = parseTopic(topic);
      assert.equal(result.ok, false, topic);
      if (!result.ok) assert.equal(result.rejection.code, RejectCode.WrongTopic);
    }
  });
});

describe('payloadFormatOf', () => {
  it('maps MQTT 5 content types to a wire format', () => {
    assert.equal(payloadFormatOf(undefined), 'json');
    assert.equal(payloadFormatOf('application/json; charset=utf-8'), 'json');
    assert.equal(payloadFormatOf('application/vnd.dmp+json'), 'json');
    assert.equal(payloadFormatOf('application/x-protobuf'), 'protobuf');
    assert.equal(payloadFormatOf('Application/Protobuf'), 'protobuf');
    assert.equal(payloadFormatOf('text/plain'), undefined);
  });
});
