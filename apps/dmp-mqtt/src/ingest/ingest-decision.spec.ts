import { RejectCode } from '@dmp/contracts';
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { DeviceMessageDecoder, parseTopic, type DecodeResult } from '../decoding/device-message.decoder';
import { PubackReason } from '../transport/mqtt-message';
import {
  decideHandOff,
  decideIngest,
  type IngestDecision,
  type IngestFacts,
  rejectionOutcome,
} from './ingest-decision';

const USER_TP = '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01';
const PAYLOAD_TP = '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01';
const decoder = new DeviceMessageDecoder(1024);
const decode = (payload: unknown): DecodeResult =>
  decoder.decode({
    deviceId: 'dev-1',
    kind: 'telemetry',
    payload: Buffer.from(JSON.stringify(payload)),
    receivedAt: 1_700_000_000_000,
  });
const good = decode({ messageId: 'm-7', ts: 1_700_000_000_000, metrics: { t: 1 }, traceparent: PAYLOAD_TP });
const facts = (more: Partial<IngestFacts> = {}): IngestFacts => ({
  topic: parseTopic('devices/dev-1/telemetry'),
  userCarrier: {},
  ...more,
});
const needOf = (d: IngestDecision) => (d.kind === 'need' ? d.fact : d.kind);
const rejectionOf = (d: IngestDecision) => (d.kind === 'reject' ? d.rejection.code : d.kind);

describe('decideIngest', () => {
  it('asks for each check only once the earlier ones passed, in the edge order', () => {
    const steps: string[] = [];
    const known: IngestFacts = facts();
    const answers: Partial<IngestFacts> = {
      identity: 'known',
      decoded: good,
      duplicate: false,
      withinRate: true,
    };
    const field = {
      identity: 'identity',
      decoded: 'decoded',
      duplicate: 'duplicate',
      rate: 'withinRate',
    } as const;
    for (let d = decideIngest(known); d.kind === 'need'; d = decideIngest(known)) {
      steps.push(d.fact);
      Object.assign(known, { [field[d.fact]]: answers[field[d.fact]] });
    }
    assert.deepEqual(steps, ['identity', 'decoded', 'duplicate', 'rate']);
    const verdict = decideIngest(known);
    assert.equal(verdict.kind, 'forward');
    assert.deepEqual(verdict.kind === 'forward' && verdict.topic, {
      deviceId: 'dev-1',
      channel: 'telemetry',
    });
  });

  it('refuses a wrong topic and filters a heartbeat without asking anything', () => {
    assert.equal(
      rejectionOf(decideIngest(facts({ topic: parseTopic('devices/dev-1') }))),
      RejectCode.WrongTopic,
    );
    assert.deepEqual(decideIngest(facts({ topic: parseTopic('devices/dev-1/heartbeat') })), {
      kind: 'filter',
      reason: RejectCode.Heartbeat,
      trace: { carrier: {}, deviceId: 'dev-1' },
    });
  });

  it('decodes nothing of an unknown device, and leaves a message for redelivery while the registry is away', () => {
    const unknown = { code: RejectCode.UnknownDevice, detail: 'not registered' };
    assert.equal(rejectionOf(decideIngest(facts({ identity: unknown }))), RejectCode.UnknownDevice);
    for (const gaveUp of ['aborted', 'timeout'] as const)
      assert.deepEqual(decideIngest(facts({ identity: gaveUp })), {
        kind: 'registry-unavailable',
        gaveUp,
        topic: { deviceId: 'dev-1', channel: 'telemetry' },
        trace: { carrier: {}, deviceId: 'dev-1' },
      });
  });

  it('costs a duplicate no rate-limit token: the duplicate check decides first', () => {
    const duplicate = decideIngest(facts({ identity: 'known', decoded: good, duplicate: 'content' }));
    assert.equal(rejectionOf(duplicate), RejectCode.Duplicate);
    assert.match(duplicate.kind === 'reject' ? duplicate.rejection.detail : '', /same content .*m-7/);
    const limited = decideIngest(
      facts({ identity: 'known', decoded: good, duplicate: false, withinRate: false }),
    );
    assert.equal(rejectionOf(limited), RejectCode.RateLimited);
    assert.equal(needOf(decideIngest(facts({ identity: 'known', decoded: good, duplicate: false }))), 'rate');
  });

  it('refuses what does not decode, with what could be read of it', () => {
    const bad = decode({ messageId: 'm-8', metrics: 'none' });
    const d = decideIngest(facts({ identity: 'known', decoded: bad }));
    assert.equal(d.kind, 'reject');
    assert.equal(d.trace?.messageId, 'm-8');
  });

  it('traces with the user properties, else the payload, once decoded', () => {
    assert.equal(decideIngest(facts({ identity: 'known' })).trace, undefined, 'not known before decoding');
    const fromPayload = decideIngest(facts({ identity: 'known', decoded: good }));
    assert.deepEqual(fromPayload.trace, {
      carrier: { traceparent: PAYLOAD_TP },
      deviceId: 'dev-1',
      messageId: 'm-7',
    });
    const userCarrier = { traceparent: USER_TP, tracestate: 'a=1' };
    const fromUser = decideIngest(facts({ userCarrier, identity: 'known', decoded: good }));
    assert.deepEqual(fromUser.trace?.carrier, userCarrier);
  });
});

describe('decideHandOff', () => {
  it('acknowledges what dmp-kernel took and refuses with its code what it did not', () => {
    assert.deepEqual(decideHandOff({ accepted: true }, 'm-7'), { kind: 'forwarded' });
    assert.deepEqual(
      decideHandOff({ accepted: false, errorCode: RejectCode.InvalidPayload, errorMessage: 'bad' }, 'm-7'),
      {
        kind: 'reject',
        rejection: {
          code: RejectCode.InvalidPayload,
          detail: 'refused by dmp-kernel: bad',
          messageId: 'm-7',
        },
      },
    );
  });
});

describe('rejectionOutcome', () => {
  it('acknowledges a refusal with a reason code that says why, a duplicate as a success', () => {
    assert.deepEqual(rejectionOutcome({ code: RejectCode.RateLimited, detail: '' }), {
      reason: RejectCode.RateLimited,
      puback: PubackReason.QuotaExceeded,
    });
    assert.equal(rejectionOutcome({ code: RejectCode.Duplicate, detail: '' }).puback, PubackReason.Success);
    assert.equal(
      rejectionOutcome({ code: 'DMP_ERR_SOMETHING_ELSE' as RejectCode, detail: '' }).puback,
      PubackReason.ImplementationSpecificError,
    );
  });
});
