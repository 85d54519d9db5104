import { ConfigError } from '@dmp/config';
import { CleanCode } from '@dmp/contracts';
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { loadKernelConfig } from '../config';
import { ruleInputOf } from './rule-input';

const NOW = Date.UTC(2026, 11, 6, 10, 0, 0);
const DAY = 86_400_000;
const { cleaning: LIMITS } = loadKernelConfig({ DATA_CLEAN_METRIC_RANGES: '{"temperature": [-40, 85]}' });

/** A stored telemetry entry as the kernel's consumer reads it, `overrides` applied. */
const entry = (overrides: Record<string, unknown> = {}): Record<string, unknown> => ({
  deviceId: 'dev-1',
  messageId: 'dev-1-0001',
  kind: 'telemetry',
  ts: NOW - 1_000,
  metrics: { temperature: 46, humidity: 40 },
  receivedAt: NOW - 900,
  tenantId: 't1',
  productId: 'p1',
  siteId: 's1',
  ...overrides,
});

describe('ruleInputOf: rules see what storage keeps', () => {
  it('evaluates a clean message as it is', () => {
    const input = ruleInputOf(entry(), LIMITS, NOW);
    assert.equal(input.kind, 'evaluate');
    assert.deepEqual(input.telemetry, entry());
    assert.deepEqual(input.removed, []);
  });

  it('skips a message stamped further ahead than storage accepts (a day ahead: the issue)', () => {
    const input = ruleInputOf(entry({ ts: NOW + DAY }), LIMITS, NOW);
    assert.equal(input.kind, 'skip');
    assert.equal(input.code, CleanCode.TsFuture);
    assert.match(input.detail, /DATA_CLEAN_MAX_FUTURE_MS/);
    // Within the limit (5 minutes by default) it is evaluated, as storage keeps it.
    assert.equal(ruleInputOf(entry({ ts: NOW + 299_000 }), LIMITS, NOW).kind, 'evaluate');
  });

  it('skips a message older than storage accepts, and one whose every metric storage removes', () => {
    const old = ruleInputOf(entry({ ts: NOW - 366 * DAY }), LIMITS, NOW);
    assert.deepEqual([old.kind, old.kind === 'skip' && old.code], ['skip', CleanCode.TsTooOld]);
    const none = ruleInputOf(entry({ metrics: { temperature: 900 } }), LIMITS, NOW);
    assert.deepEqual([none.kind, none.kind === 'skip' && none.code], ['skip', CleanCode.NoMetricsLeft]);
  });

  it('evaluates without the metrics storage removes (out of range, not finite)', () => {
    const input = ruleInputOf(
      entry({ metrics: { temperature: 900, humidity: Infinity, door: true } }),
      LIMITS,
      NOW,
    );
    assert.equal(input.kind, 'evaluate');
    assert.deepEqual(input.telemetry.metrics, { door: true });
    assert.deepEqual(
      input.removed.map((r) => [r.metric, r.code]),
      [
        ['temperature', CleanCode.OutOfRange],
        ['humidity', CleanCode.NotFinite],
      ],
    );
  });

  it('refuses what is no NormalizedTelemetry at all, saying what is wrong', () => {
    const missing = ruleInputOf(entry({ deviceId: undefined }), LIMITS, NOW);
    assert.equal(missing.kind, 'invalid');
    assert.match(
      missing.problem,
      /^not a NormalizedTelemetry \(DMP_ERR_CLEAN_MISSING_FIELD\): missing deviceId/,
    );
    const invalid = ruleInputOf([1, 2], LIMITS, NOW);
    assert.equal(invalid.kind, 'invalid');
    assert.match(invalid.problem, /DMP_ERR_CLEAN_INVALID_FIELD/);
  });

  it("reads dmp-data's DATA_CLEAN_* variables, validated at start-up, naming the variable", () => {
    const { cleaning } = loadKernelConfig({
      DATA_CLEAN_MAX_FUTURE_MS: '60000',
      DATA_CLEAN_MAX_AGE_MS: '0',
      DATA_CLEAN_MAX_ABS_VALUE: '1e9',
    });
    assert.deepEqual([cleaning.maxFutureMs, cleaning.maxAgeMs, cleaning.maxAbsValue], [60_000, 0, 1e9]);
    assert.throws(
      () => loadKernelConfig({ DATA_CLEAN_METRIC_RANGES: '{"temperature": [85, -40]}' }),
      (error: unknown) =>
        error instanceof ConfigError &&
        error.problems.join() === 'DATA_CLEAN_METRIC_RANGES.temperature: min must not exceed max',
    );
  });
});
