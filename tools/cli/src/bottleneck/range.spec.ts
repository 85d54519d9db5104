import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { parseDuration, resolveRange } from './range';

describe('dmp bottleneck time range', () => {
  const now = Date.parse('2026-11-21T12:00:00Z');

  it('reads --since as the last so long, ending now', () => {
    const range = resolveRange({ since: '10m' }, now);
    assert.equal(range.from.toISOString(), '2026-11-21T11:50:00.000Z');
    assert.equal(range.to.toISOString(), '2026-11-21T12:00:00.000Z');
    assert.equal(resolveRange({}, now).from.toISOString(), '2026-11-21T11:50:00.000Z');
    assert.equal(parseDuration('90s'), 90_000);
    assert.equal(parseDuration('1.5h'), 5_400_000);
    assert.equal(parseDuration('ten minutes'), undefined);
  });

  it('reads --from / --to as ISO times or durations ago', () => {
    const range = resolveRange({ from: '2026-11-21T11:00:00Z', to: '15m' }, now);
    assert.equal(range.from.toISOString(), '2026-11-21T11:00:00.000Z');
    assert.equal(range.to.toISOString(), '2026-11-21T11:45:00.000Z');
    assert.equal(resolveRange({ from: '2026-11-21T11:58:00Z' }, now).to.getTime(), now);
  });

  it('refuses ranges it cannot analyze', () => {
    assert.throws(() => resolveRange({ since: '10m', from: '1h' }, now), /not both/);
    assert.throws(() => resolveRange({ since: 'yesterday' }, now), /duration/);
    assert.throws(() => resolveRange({ from: 'yesterday' }, now), /ISO 8601/);
    assert.throws(() => resolveRange({ since: '10s' }, now), /at least 30 s/);
    assert.throws(() => resolveRange({ from: '2026-11-21T12:30:00Z' }, now), /at least 30 s/);
  });
});
