import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { normalizedTelemetrySchema } from '@dmp/contracts';
import { newestPerMetric, toDateTimeSeconds, toTelemetryRows } from './telemetry-rows';

const message = normalizedTelemetrySchema.parse({
  deviceId: 'dev-1',
  messageId: 'm-1',
  kind: 'event',
  ts: 1_700_000_000_123,
  seq: 7,
  metrics: { temp: 21.5, door: true, mode: 'eco', alarm: false, rssi: -70 },
  receivedAt: 1_700_000_000_456,
  tenantId: 't1',
  productId: 'p1',
  siteId: 's1',
});

describe('toTelemetryRows', () => {
  it('maps a message to one raw row with numbers, booleans as 0/1 and text in parallel arrays', () => {
    const { raw } = toTelemetryRows(message, 1_700_000_001_999);
    assert.deepEqual(raw, {
      device_id: 'dev-1',
      message_id: 'm-1',
      kind: 'event',
      ts_ms: 1_700_000_000_123,
      ts: 1_700_000_000,
      seq: 7,
      tenant_id: 't1',
      product_id: 'p1',
      site_id: 's1',
      metric_names: ['temp', 'door', 'alarm', 'rssi'],
      metric_values: [21.5, 1, 0, -70],
      text_names: ['mode'],
      text_values: ['eco'],
      received_at_ms: 1_700_000_000_456,
      inserted_at: 1_700_000_001,
    });
  });

  it('maps each metric to a latest row typed number, bool or text', () => {
    const { latest } = toTelemetryRows(message);
    assert.deepEqual(
      latest.map((r) => [r.metric, r.value_type, r.value, r.text_value, r.ts_ms, r.message_id, r.device_id]),
      [
        ['temp', 'number', 21.5, '', 1_700_000_000_123, 'm-1', 'dev-1'],
        ['door', 'bool', 1, '', 1_700_000_000_123, 'm-1', 'dev-1'],
        ['mode', 'text', 0, 'eco', 1_700_000_000_123, 'm-1', 'dev-1'],
        ['alarm', 'bool', 0, '', 1_700_000_000_123, 'm-1', 'dev-1'],
        ['rssi', 'number', -70, '', 1_700_000_000_123, 'm-1', 'dev-1'],
      ],
    );
  });

  it('writes a missing seq as null and an empty metrics object as empty arrays', () => {
    const { raw, latest } = toTelemetryRows({ ...message, seq: undefined, metrics: {} });
    assert.equal(raw.seq, null);
    assert.deepEqual(
      [raw.metric_names, raw.metric_values, raw.text_names, raw.text_values],
      [[], [], [], []],
    );
    assert.deepEqual(latest, []);
  });

  it('clamps DateTime seconds to what a DateTime holds', () => {
    assert.equal(toDateTimeSeconds(9_000_000_000_000_000), 0xffffffff);
    assert.equal(toDateTimeSeconds(-5), 0);
    assert.equal(toDateTimeSeconds(1_999), 1);
  });
});

describe('newestPerMetric', () => {
  const row = (device: string, metric: string, ts: number, id: string) =>
    toTelemetryRows({ ...message, deviceId: device, messageId: id, ts, metrics: { [metric]: ts } }).latest[0];

  it('keeps the newest row per device and metric', () => {
    const kept = newestPerMetric([
      row('a', 'x', 1, 'm1'),
      row('a', 'x', 3, 'm3'),
      row('a', 'x', 2, 'm2'),
      row('b', 'x', 1, 'n1'),
    ]);
    assert.deepEqual(
      kept.map((r) => [r.device_id, r.metric, r.message_id]),
      [
        ['a', 'x', 'm3'],
        ['b', 'x', 'n1'],
      ],
    );
  });

  it('keeps every distinct message tied on the newest ts (the engine breaks ties), once each', () => {
    const kept = newestPerMetric([
      row('a', 'x', 5, 'p'),
      row('a', 'x', 5, 'q'),
      row('a', 'x', 5, 'p'),
      row('a', 'x', 4, 'r'),
    ]);
    assert.deepEqual(kept.map((r) => r.message_id).sort(), ['p', 'q']);
  });

  it("keeps the table's winner whatever the order, duplicates and tiebreak (version = ts, then a hash of the id)", () => {
    // Whatever hash the engine breaks ties with, its winner among a batch's rows is kept.
    const tiebreaks = [
      (id: string) => id.charCodeAt(0),
      (id: string) => -id.charCodeAt(0),
      (id: string) => [...id].reduce((h, c) => (h * 31 + c.charCodeAt(0)) % 1024, 7),
    ];
    let seed = 42;
    const random = (n: number) => (seed = (seed * 1_103_515_245 + 12_345) % 2 ** 31) % n;
    for (let round = 0; round < 200; round++) {
      const rows = Array.from({ length: 1 + random(12) }, () =>
        row(`d${random(3)}`, `m${random(2)}`, 100 + random(4), `id${random(6)}`),
      );
      const batch = [...rows, ...rows.slice(0, random(rows.length + 1))]; // duplicates within it
      const kept = newestPerMetric(batch);
      for (const tiebreak of tiebreaks) {
        const winner = new Map<string, (typeof rows)[number]>();
        for (const r of batch) {
          const key = `${r.device_id}/${r.metric}`;
          const w = winner.get(key);
          if (
            !w ||
            r.ts_ms > w.ts_ms ||
            (r.ts_ms === w.ts_ms && tiebreak(r.message_id) > tiebreak(w.message_id))
          )
            winner.set(key, r);
        }
        for (const [key, w] of winner)
          assert.ok(
            kept.some((k) => `${k.device_id}/${k.metric}` === key && k.message_id === w.message_id),
            `round ${round}: ${key} ${w.message_id}`,
          );
      }
      // Each kept row once, and only rows tied on the newest ts of their device and metric.
      assert.equal(new Set(kept.map((k) => `${k.device_id}/${k.metric}/${k.message_id}`)).size, kept.length);
      for (const k of kept)
        assert.equal(
          k.ts_ms,
          Math.max(
            ...batch.filter((b) => b.device_id === k.device_id && b.metric === k.metric).map((b) => b.ts_ms),
          ),
        );
    }
  });

  it('keeps the same rows for a redelivered batch, and for one row per device and metric', () => {
    const batch = [row('a', 'x', 2, 'm2'), row('a', 'y', 1, 'm1'), row('b', 'x', 3, 'n3')];
    const ids = (rows: typeof batch) => rows.map((r) => `${r.device_id}/${r.metric}/${r.message_id}`).sort();
    assert.deepEqual(ids(newestPerMetric([...batch, ...batch])), ids(batch));
    assert.deepEqual(ids(newestPerMetric(batch)), ids(batch));
  });
});
