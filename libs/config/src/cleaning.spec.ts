import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { CleanCode, cleanTelemetry, type CleaningLimits, type CleaningResult } from '@dmp/contracts';
import { cleaningSection } from './cleaning';

const NOW = Date.UTC(2026, 10, 21, 10, 0, 0);
const DAY = 86_400_000;
const LIMITS: CleaningLimits = cleaningSection.parse({
  DATA_CLEAN_METRIC_RANGES: '{"hum": [0, 100], "level": [0, null], "constructor": [1, 2]}',
});

/** A valid entry as dmp-kernel sends it, `overrides` applied (undefined deletes a field). */
function entry(overrides: Record<string, unknown> = {}): Record<string, unknown> {
  const base: Record<string, unknown> = {
    deviceId: 'dev-001',
    messageId: 'dev-001-0001',
    kind: 'telemetry',
    ts: NOW - 1_000,
    seq: 7,
    metrics: { temp: 21.5, hum: 40, door: false, mode: 'eco' },
    receivedAt: NOW - 900,
    tenantId: 't1',
    productId: 'p1',
    siteId: 's1',
  };
  for (const [key, value] of Object.entries(overrides))
    if (value === undefined) delete base[key];
    else base[key] = value;
  return base;
}

function accepted(result: CleaningResult) {
  assert.equal(result.kind, 'accepted', JSON.stringify(result));
  return result;
}

function rejected(result: CleaningResult, code: string) {
  assert.equal(result.kind, 'rejected', JSON.stringify(result));
  const r = result;
  assert.equal(r.rejection.code, code, r.rejection.detail);
  return r;
}

describe('cleanTelemetry', () => {
  it('passes a clean message through unchanged, nothing removed', () => {
    const result = accepted(cleanTelemetry(entry(), LIMITS, NOW));
    assert.deepEqual(result.removed, []);
    assert.deepEqual(result.telemetry, entry());
  });

  it('removes NaN and ±Infinity (what JSON.parse makes of 1e999) and keeps the good metrics', () => {
    const parsed: unknown = JSON.parse(
      JSON.stringify(entry()).replace('"temp":21.5', '"temp":1e999,"low":-1e999'),
    );
    const result = accepted(cleanTelemetry(parsed, LIMITS, NOW));
    assert.deepEqual(
      result.removed.map((r) => [r.metric, r.code, r.detail]),
      [
        ['temp', CleanCode.NotFinite, 'Infinity is not a finite number'],
        ['low', CleanCode.NotFinite, '-Infinity is not a finite number'],
      ],
    );
    assert.deepEqual(result.telemetry.metrics, { hum: 40, door: false, mode: 'eco' });
    assert.equal(result.telemetry.messageId, 'dev-001-0001');

    const nan = accepted(cleanTelemetry(entry({ metrics: { temp: NaN, hum: 1 } }), LIMITS, NOW));
    assert.deepEqual(
      nan.removed.map((r) => [r.code, r.detail]),
      [[CleanCode.NotFinite, 'NaN is not a finite number']],
    );
    assert.deepEqual(nan.telemetry.metrics, { hum: 1 });
  });

  it('removes numbers outside their configured range, or beyond ±DATA_CLEAN_MAX_ABS_VALUE', () => {
    const result = accepted(
      cleanTelemetry(
        entry({ metrics: { hum: 150, temp: 2e15, cold: -2e15, level: -1, deep: 5e14, ok: 1e15 } }),
        LIMITS,
        NOW,
      ),
    );
    assert.deepEqual(
      result.removed.map((r) => [r.metric, r.code, r.detail]),
      [
        ['hum', CleanCode.OutOfRange, '150 is outside [0, 100]'],
        ['temp', CleanCode.OutOfRange, '2000000000000000 is outside [-1000000000000000, 1000000000000000]'],
        ['cold', CleanCode.OutOfRange, '-2000000000000000 is outside [-1000000000000000, 1000000000000000]'],
        ['level', CleanCode.OutOfRange, '-1 is outside [0, 1000000000000000]'],
      ],
    );
    assert.deepEqual(result.telemetry.metrics, { deep: 5e14, ok: 1e15 });
  });

  it('lets a configured range reach beyond the global bound, and applies it by exact name only', () => {
    const limits = cleaningSection.parse({ DATA_CLEAN_METRIC_RANGES: '{"energy": [0, 1e18]}' });
    const result = accepted(cleanTelemetry(entry({ metrics: { energy: 1e17, energy2: 1e17 } }), limits, NOW));
    assert.deepEqual(
      result.removed.map((r) => r.metric),
      ['energy2'],
    );
    assert.deepEqual(result.telemetry.metrics, { energy: 1e17 });
  });

  it('looks ranges up safely: a metric named like an Object method gets its own range, not a prototype', () => {
    const result = accepted(cleanTelemetry(entry({ metrics: { constructor: 5, toString: 5 } }), LIMITS, NOW));
    assert.deepEqual(
      result.removed.map((r) => [r.metric, r.detail]),
      [['constructor', '5 is outside [1, 2]']],
    );
    assert.deepEqual(result.telemetry.metrics, { toString: 5 });
  });

  it('with DATA_CLEAN_MAX_ABS_VALUE=0 only non-finite numbers and configured ranges remove values', () => {
    const limits = cleaningSection.parse({ DATA_CLEAN_MAX_ABS_VALUE: '0' });
    const result = accepted(cleanTelemetry(entry({ metrics: { big: 1e300, inf: Infinity } }), limits, NOW));
    assert.deepEqual(
      result.removed.map((r) => r.code),
      [CleanCode.NotFinite],
    );
    assert.deepEqual(result.telemetry.metrics, { big: 1e300 });
  });

  it('removes metrics with an invalid name or value (null, object, too long a text), keeps the rest', () => {
    const result = accepted(
      cleanTelemetry(
        entry({
          metrics: {
            '9bad': 1,
            'a/b': 2,
            nothing: null,
            nested: { x: 1 },
            list: [1],
            long: 'x'.repeat(257),
            ok: 'y',
          },
        }),
        LIMITS,
        NOW,
      ),
    );
    assert.deepEqual(
      result.removed.map((r) => [r.metric, r.code]),
      [
        ['9bad', CleanCode.InvalidMetric],
        ['a/b', CleanCode.InvalidMetric],
        ['nothing', CleanCode.InvalidMetric],
        ['nested', CleanCode.InvalidMetric],
        ['list', CleanCode.InvalidMetric],
        ['long', CleanCode.InvalidMetric],
      ],
    );
    assert.match(result.removed[2].detail, /^null is no number/);
    assert.match(result.removed[5].detail, /^text of 257 characters/);
    assert.deepEqual(result.telemetry.metrics, { ok: 'y' });
  });

  it('refuses a message whose every metric was removed (nothing left to store)', () => {
    const result = rejected(
      cleanTelemetry(entry({ metrics: { temp: Infinity, hum: 101 } }), LIMITS, NOW),
      CleanCode.NoMetricsLeft,
    );
    assert.deepEqual(
      result.removed.map((r) => r.code),
      [CleanCode.NotFinite, CleanCode.OutOfRange],
    );
    assert.match(result.rejection.detail, /^all 2 metric\(s\) removed: temp \(DMP_ERR_CLEAN_NOT_FINITE/);
  });

  it('accepts a message that arrived with no metrics at all (nothing was removed)', () => {
    const result = accepted(cleanTelemetry(entry({ metrics: {} }), LIMITS, NOW));
    assert.deepEqual(result.removed, []);
  });

  it('refuses a message missing a required field, naming it and the schema issue', () => {
    for (const field of ['deviceId', 'messageId', 'kind', 'ts', 'metrics', 'receivedAt']) {
      const result = rejected(
        cleanTelemetry(entry({ [field]: undefined }), LIMITS, NOW),
        CleanCode.MissingField,
      );
      assert.ok(result.rejection.detail.startsWith(`missing ${field} — ${field}: `), result.rejection.detail);
    }
    const nulls = rejected(
      cleanTelemetry(entry({ ts: null, receivedAt: undefined }), LIMITS, NOW),
      CleanCode.MissingField,
    );
    assert.ok(nulls.rejection.detail.startsWith('missing ts, receivedAt — '), nulls.rejection.detail);
  });

  it('refuses a message with an invalid field, with the schema issues as detail', () => {
    const cases: [Record<string, unknown>, RegExp][] = [
      [{ deviceId: 'dev/001' }, /^deviceId: /],
      [{ kind: 'heartbeat' }, /^kind: /],
      [{ ts: 1.5 }, /^ts: /],
      [{ ts: -5 }, /^ts: /],
      [{ seq: -1 }, /^seq: /],
      [{ metrics: [1, 2] }, /^metrics: /],
      [{ metrics: Object.fromEntries(Array.from({ length: 257 }, (_, i) => [`m${i}`, i])) }, /at most 256/],
    ];
    for (const [overrides, detail] of cases) {
      const result = rejected(cleanTelemetry(entry(overrides), LIMITS, NOW), CleanCode.InvalidField);
      assert.match(result.rejection.detail, detail);
    }
    for (const root of [null, 42, 'text', [entry()]])
      assert.match(
        rejected(cleanTelemetry(root, LIMITS, NOW), CleanCode.InvalidField).rejection.detail,
        /^\(root\): expected a JSON object/,
      );
  });

  it('lists the metrics it would have removed too when it refuses a message', () => {
    const result = rejected(
      cleanTelemetry(entry({ messageId: undefined, metrics: { temp: Infinity, hum: 1 } }), LIMITS, NOW),
      CleanCode.MissingField,
    );
    assert.deepEqual(
      result.removed.map((r) => r.metric),
      ['temp'],
    );
  });

  it('refuses a timestamp further in the future than DATA_CLEAN_MAX_FUTURE_MS, accepts one just within', () => {
    const limit = LIMITS.maxFutureMs;
    assert.equal(limit, 5 * 60_000);
    accepted(cleanTelemetry(entry({ ts: NOW + limit }), LIMITS, NOW));
    const result = rejected(cleanTelemetry(entry({ ts: NOW + limit + 1 }), LIMITS, NOW), CleanCode.TsFuture);
    assert.match(result.rejection.detail, /is 300001 ms ahead of the clock .* at most 300000 ms/);
  });

  it('refuses a timestamp older than DATA_CLEAN_MAX_AGE_MS (a year by default), accepts backfill within it', () => {
    assert.equal(LIMITS.maxAgeMs, 365 * DAY);
    accepted(cleanTelemetry(entry({ ts: NOW - 364 * DAY }), LIMITS, NOW));
    const result = rejected(cleanTelemetry(entry({ ts: NOW - 366 * DAY }), LIMITS, NOW), CleanCode.TsTooOld);
    assert.match(result.rejection.detail, /^ts 2025-11-20T10:00:00\.000Z is 31622400000 ms old/);
  });

  it('checks no timestamp when both limits are 0', () => {
    const limits = cleaningSection.parse({ DATA_CLEAN_MAX_FUTURE_MS: '0', DATA_CLEAN_MAX_AGE_MS: '0' });
    accepted(cleanTelemetry(entry({ ts: NOW + 10 * 365 * DAY }), limits, NOW));
    accepted(cleanTelemetry(entry({ ts: 1 }), limits, NOW));
  });
});
