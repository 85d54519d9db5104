import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  correctionId,
  correctionRequestSchema,
  latestMutation,
  marksSql,
  minutesMutation,
  rowsMutation,
  type CorrectionRequest,
} from './corrections';

const T = Date.UTC(2026, 11, 1, 10, 0, 30); // half a minute past 10:00
const request = (r: Partial<CorrectionRequest> = {}): CorrectionRequest => ({
  action: 'offset',
  metric: 'temp',
  operand: -1.5,
  deviceIds: ['d2', 'd1'],
  fromMs: T,
  toMs: T + 120_000,
  reason: 'calibration',
  requestedBy: 'ops',
  ...r,
});

describe('telemetry corrections', () => {
  it('names a correction by what it corrects: the same request, whoever asks and why, is the same one', () => {
    const id = correctionId(request());
    assert.match(id, /^cor-[0-9a-f]{24}$/);
    assert.equal(
      correctionId(request({ deviceIds: ['d1', 'd2', 'd1'], reason: 'again', requestedBy: 'x' })),
      id,
    );
    assert.notEqual(correctionId(request({ operand: -1.4 })), id);
    assert.notEqual(correctionId(request({ toMs: T + 60_000 })), id);
  });

  it('refuses requests that say nothing sensible, with the reason', () => {
    const refused = (r: Partial<CorrectionRequest>) => {
      const result = correctionRequestSchema.safeParse(request(r));
      assert.equal(result.success, false, JSON.stringify(r));
      return result.error?.issues.map((i) => i.message).join('; ');
    };
    assert.match(refused({ toMs: T }), /from must be before to/);
    assert.match(refused({ reason: '  ' }), /say why/);
    assert.match(refused({ deviceIds: [] }), /too_small|at least|>=1/i);
    assert.match(refused({ action: 'delete' }), /none for delete/);
    assert.match(refused({ action: 'set', metric: '' }), /a metric for/);
    assert.match(refused({ operand: Number.NaN }), /number|finite/i);
    assert.equal(correctionRequestSchema.safeParse(request({ action: 'delete', metric: '' })).success, true);
  });

  it("changes only the metric's values of the devices' rows in the range, tagged with the correction", () => {
    const sql = rowsMutation(request(), 'cor-1');
    assert.equal(
      sql,
      "UPDATE metric_values = arrayMap((n, v) -> if(n = 'temp', v + (-1.5), v), metric_names, metric_values) " +
        `WHERE device_id IN ('d2', 'd1') AND ts_ms >= ${T} AND ts_ms < ${T + 120_000} AND has(metric_names, 'temp') ` +
        "AND 'dmp-correction:cor-1' != ''",
    );
    assert.match(
      rowsMutation(request({ action: 'scale', operand: 1.8 }), 'c'),
      /if\(n = 'temp', v \* \(1\.8\), v\)/,
    );
    assert.match(rowsMutation(request({ action: 'set', operand: 0 }), 'c'), /if\(n = 'temp', \(0\), v\)/);
    assert.match(
      rowsMutation(request({ action: 'remove' }), 'c'),
      /^UPDATE metric_values = arrayFilter\(\(v, n\) -> n != 'temp', metric_values, metric_names\), metric_names = arrayFilter\(n -> n != 'temp', metric_names\) WHERE/,
    );
    assert.match(
      rowsMutation(request({ action: 'delete', metric: '' }), 'c'),
      /^DELETE WHERE device_id IN .* AND ts_ms < \d+ AND 'dmp/,
    );
    // Names are quoted, never spliced.
    assert.match(rowsMutation(request({ metric: "te'mp" }), 'c'), /n = 'te\\'mp'/);
  });

  it('removes the aggregates of every minute the range touches, and the latest values it may hold', () => {
    const first = Math.floor(T / 60_000) * 60;
    assert.equal(
      minutesMutation(request(), 'c'),
      `DELETE WHERE device_id IN ('d2', 'd1') AND minute >= toDateTime(${first}) AND minute < toDateTime(${(T + 120_000) / 1000}) AND metric = 'temp' AND 'dmp-correction:c' != ''`,
    );
    assert.doesNotMatch(minutesMutation(request({ action: 'delete', metric: '' }), 'c'), /metric =/);
    assert.match(
      latestMutation(request(), 'c'),
      /ts_ms >= \d+ AND ts_ms < \d+ AND metric = 'temp' AND 'dmp-correction:c'/,
    );
    assert.match(marksSql(request()), /notEmpty\(metric_names\)/);
  });
});
