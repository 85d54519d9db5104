import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { NormalizedTelemetry } from './telemetry';
import {
  decodeTelemetryBody,
  encodeTelemetryPack,
  TELEMETRY_PACK_FORMAT,
  telemetryPackEntryJson,
  TelemetryProperty,
  telemetryShardOf,
} from './telemetry-pack';

const telemetry = (n: number): NormalizedTelemetry => ({
  deviceId: `dev-${n}`,
  messageId: `m-${n}`,
  kind: 'telemetry',
  ts: 1_700_000_000_000 + n,
  metrics: { temperature: n, text: `ü ${n} "quoted"` },
  receivedAt: 1_700_000_000_100 + n,
  tenantId: 't',
  productId: '',
  siteId: '',
});
const pack = { [TelemetryProperty.format]: TELEMETRY_PACK_FORMAT };

describe('telemetry packs', () => {
  it('round-trips entries in order, each with its own trace context', () => {
    const entries = [0, 1, 2].map((n) => ({
      telemetry: telemetry(n),
      traceparent: `00-${'a'.repeat(31)}${n}-${'b'.repeat(16)}-01`,
      ...(n === 1 ? { tracestate: 'k=v' } : {}),
    }));
    const body = encodeTelemetryPack(entries.map(telemetryPackEntryJson));
    assert.deepEqual(decodeTelemetryBody(body, pack), entries);
  });

  it('reads a body without a format as one NormalizedTelemetry with the message trace context', () => {
    const body = Buffer.from(JSON.stringify(telemetry(7)));
    assert.deepEqual(decodeTelemetryBody(body, { traceparent: 'tp' }), [
      { telemetry: telemetry(7), traceparent: 'tp', tracestate: undefined },
    ]);
  });

  it('says what is wrong with a body that is not JSON, not a pack, or of an unknown format', () => {
    assert.throws(() => decodeTelemetryBody(Buffer.from('{oops'), pack), /body is not JSON/);
    assert.throws(() => decodeTelemetryBody(Buffer.from('{"x":1}'), pack), /without an "entries" array/);
    assert.throws(() => decodeTelemetryBody(Buffer.from('null'), pack), /without an "entries" array/);
    assert.throws(
      () => decodeTelemetryBody(Buffer.from('{}'), { [TelemetryProperty.format]: 'v9' }),
      /unknown dmp_format 'v9'/,
    );
  });

  it('keeps malformed entries for the consumer to refuse one by one', () => {
    const body = Buffer.from('{"entries":[null,{"telemetry":5,"traceparent":7}]}');
    assert.deepEqual(decodeTelemetryBody(body, pack), [{ telemetry: undefined }, { telemetry: 5 }]);
  });

  it('hashes devices onto shards stably and evenly', () => {
    assert.equal(telemetryShardOf('dev-1', 32), telemetryShardOf('dev-1', 32));
    const counts = new Array<number>(32).fill(0);
    for (let i = 0; i < 32_000; i++) counts[telemetryShardOf(`device-${i}`, 32)]++;
    assert.ok(Math.min(...counts) > 800 && Math.max(...counts) < 1200, `uneven: ${counts.join(',')}`);
  });
});
