import {
  type IngestBatch,
  TELEMETRY_LOADER_OPTIONS,
  TELEMETRY_PROTO_PATH,
  type TelemetryMessage,
} from '@dmp/contracts';
import { loadSync } from '@grpc/proto-loader';
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { normalizeEnvelope } from '../normalization/normalizer';
import { toTelemetryEnvelope } from './telemetry.mapper';

/** The Ingest request as the server's handler receives it: encoded by a client, decoded with our loader options. */
const definition = loadSync(TELEMETRY_PROTO_PATH, TELEMETRY_LOADER_OPTIONS);
type MethodDefinition = { requestSerialize(v: unknown): Buffer; requestDeserialize(b: Buffer): unknown };
const { Ingest: ingest } = definition['dmp.telemetry.v1.KernelIngest'] as unknown as {
  Ingest: MethodDefinition;
};
const overTheWire = (message: Record<string, unknown>): TelemetryMessage => {
  const [decoded] = (
    ingest.requestDeserialize(ingest.requestSerialize({ messages: [message] })) as IngestBatch
  ).messages;
  assert.ok(decoded);
  return decoded;
};

const now = 1_760_000_000_000;
const valid = {
  deviceId: 'dev-1',
  messageId: 'm-1',
  kind: 'KIND_TELEMETRY',
  ts: now - 1_000,
  seq: 7,
  metrics: { temp: { number: 21.5 }, on: { flag: false }, mode: { text: 'eco' }, zero: { number: 0 } },
  receivedAt: now,
  traceparent: '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01',
};

describe('toTelemetryEnvelope (gRPC Telemetry → TelemetryEnvelope)', () => {
  it('maps kinds and each metric oneof to number, boolean or string — zero and false included', () => {
    const result = toTelemetryEnvelope(overTheWire(valid), now);
    assert.deepEqual(result, {
      ok: true,
      envelope: {
        deviceId: 'dev-1',
        messageId: 'm-1',
        kind: 'telemetry',
        ts: now - 1_000,
        seq: 7,
        metrics: { temp: 21.5, on: false, mode: 'eco', zero: 0 },
        receivedAt: now,
      },
    });
    for (const [kind, expected] of [
      ['KIND_EVENT', 'event'],
      ['KIND_SNAPSHOT', 'snapshot'],
    ] as const) {
      const mapped = toTelemetryEnvelope(overTheWire({ ...valid, kind }), now);
      assert.equal(mapped.ok && mapped.envelope.kind, expected);
    }
  });

  it('leaves seq out when it is 0 (proto3 default) and fills a missing received_at with now', () => {
    const result = toTelemetryEnvelope(overTheWire({ ...valid, seq: 0, receivedAt: 0 }), now);
    assert.ok(result.ok);
    assert.equal('seq' in result.envelope, false);
    assert.equal(result.envelope.receivedAt, now);
  });

  it('keeps 64-bit millisecond timestamps exact (longs as numbers)', () => {
    const result = toTelemetryEnvelope(overTheWire({ ...valid, ts: 4_102_444_800_123 }), now);
    assert.equal(result.ok && result.envelope.ts, 4_102_444_800_123);
  });

  it('rejects an unspecified kind, a metric without value, bad ids and non-finite numbers with DMP_ERR_INVALID_PAYLOAD', () => {
    const cases: [Record<string, unknown>, RegExp][] = [
      [{ ...valid, kind: 'KIND_UNSPECIFIED' }, /^kind: KIND_UNSPECIFIED/],
      [{ ...valid, metrics: { temp: {} } }, /^metrics\.temp: no value set/],
      [{ ...valid, deviceId: 'dev/1' }, /^deviceId: /],
      [{ ...valid, deviceId: '' }, /^deviceId: /],
      [{ ...valid, messageId: '' }, /^messageId: /],
      [{ ...valid, ts: 0 }, /^ts: /],
      [{ ...valid, metrics: { temp: { number: Number.NaN } } }, /^metrics\.temp: /],
      [{ ...valid, metrics: { '1bad': { number: 1 } } }, /^metrics\.1bad: /],
    ];
    for (const [message, expected] of cases) {
      const result = toTelemetryEnvelope(overTheWire(message), now);
      assert.equal(result.ok, false, JSON.stringify(message));
      assert.ok(!result.ok);
      assert.equal(result.code, 'DMP_ERR_INVALID_PAYLOAD');
      assert.match(result.message, expected);
    }
  });
});

describe('normalizeEnvelope', () => {
  it('adds empty tenant, product and site and keeps everything else', () => {
    const mapped = toTelemetryEnvelope(overTheWire(valid), now);
    assert.ok(mapped.ok);
    assert.deepEqual(normalizeEnvelope(mapped.envelope), {
      ...mapped.envelope,
      tenantId: '',
      productId: '',
      siteId: '',
    });
  });
});
