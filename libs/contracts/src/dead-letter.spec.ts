import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  DEAD_LETTER_BATCH_FORMAT,
  type DeadLetterEntry,
  decodeDeadLetterBatch,
  encodeDeadLetterBatch,
  isDeadLetterBatch,
  deadLetterBody,
  deadLetterPayload,
  deadLetterPropertyValue,
  DeadLetterProperty,
  isForConsumerGroup,
} from './dead-letter';
import { deviceMetadataOf } from './devices';

describe('dead-letter helpers', () => {
  it('round-trips payloads, including the empty one', () => {
    for (const payload of [Buffer.alloc(0), Buffer.from([0]), Buffer.from('{"a":1}')]) {
      const body = deadLetterBody(payload);
      assert.ok(body.length > 0);
      const properties = { [DeadLetterProperty.payloadSize]: String(payload.length) };
      assert.deepEqual(deadLetterPayload(body, properties), payload);
    }
    // Without the size property (e.g. a consumer's dead letter) the body is the payload.
    assert.deepEqual(deadLetterPayload(Buffer.from('x'), {}), Buffer.from('x'));
  });

  it('escapes control characters and bounds the length without splitting surrogate pairs', () => {
    assert.equal(deadLetterPropertyValue('a\u0000b\nc\u0085'), 'a\\u0000b\\u000ac\\u0085');
    assert.equal(deadLetterPropertyValue('plain ü 😀'), 'plain ü 😀');
    const cut = deadLetterPropertyValue('😀'.repeat(100), 11);
    assert.ok(cut.length <= 11);
    assert.ok(cut.endsWith('…'));
    assert.ok(Buffer.from(cut, 'utf8').toString('utf8') === cut, 'still valid UTF-16 → UTF-8');
    assert.doesNotMatch(cut, /[\ud800-\udbff](?![\udc00-\udfff])/);
  });

  it('escapes lone surrogates: one in an error detail made the whole batch undecodable', () => {
    // A device's metric named "t\ud800" (JSON escape) lands in the detail `metrics.t\ud800: …`.
    const detail = 'metrics.t\ud800: invalid metric name; x\udc00y 😀';
    const value = deadLetterPropertyValue(detail);
    assert.equal(value, 'metrics.t\\ud800: invalid metric name; x\\udc00y 😀');
    const batch = encodeDeadLetterBatch([
      { properties: { dmp_error_message: value }, payload: Buffer.from('p') },
    ]);
    assert.equal(decodeDeadLetterBatch(batch)[0].properties.dmp_error_message, value);
  });
});

describe('dead-letter batches', () => {
  it('round-trips entries: properties and raw payloads, empty and binary ones included', () => {
    const entries: DeadLetterEntry[] = [
      {
        properties: { dmp_error_code: 'DMP_ERR_UNKNOWN_DEVICE', dmp_device_id: 'd-1' },
        payload: Buffer.from('{}'),
      },
      { properties: { dmp_error_code: 'DMP_ERR_MALFORMED_PAYLOAD' }, payload: Buffer.alloc(0) },
      { properties: {}, payload: Buffer.from([0xff, 0x00, 0xfe]) },
    ];
    const decoded = decodeDeadLetterBatch(encodeDeadLetterBatch(entries));
    assert.deepEqual(decoded, entries);
    assert.ok(decoded.every((entry) => Buffer.isBuffer(entry.payload)));
  });

  it('is told apart by its format property, and a body that is not a batch throws', () => {
    assert.equal(isDeadLetterBatch({ [DeadLetterProperty.format]: DEAD_LETTER_BATCH_FORMAT }), true);
    assert.equal(isDeadLetterBatch({}), false);
    assert.throws(() => decodeDeadLetterBatch(Buffer.from([0x0a, 0xff, 0xff, 0xff])));
  });
});

describe('deviceMetadataOf', () => {
  it('reads the enrichment fields, tolerating missing or malformed tags', () => {
    assert.deepEqual(
      deviceMetadataOf({ tenantId: 't', productId: 'p', siteId: 's', tags: '{"floor":"3","n":4}' }),
      {
        tenantId: 't',
        productId: 'p',
        siteId: 's',
        tags: { floor: '3' },
      },
    );
    assert.deepEqual(deviceMetadataOf({ tags: 'not json' }), {
      tenantId: '',
      productId: '',
      siteId: '',
      tags: {},
    });
  });
});

describe('isForConsumerGroup', () => {
  it('lets every group handle a message, and only its group a replay meant for it', () => {
    assert.equal(isForConsumerGroup({}, 'dmp_data'), true);
    assert.equal(isForConsumerGroup({ [DeadLetterProperty.replayForGroup]: '' }, 'dmp_data'), true);
    const replay = { [DeadLetterProperty.replayForGroup]: 'dmp_data' };
    assert.equal(isForConsumerGroup(replay, 'dmp_data'), true);
    assert.equal(isForConsumerGroup(replay, 'dmp_kernel_rules'), false);
  });
});
