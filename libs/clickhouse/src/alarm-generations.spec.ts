import { DmpError, type AlarmEvent } from '@dmp/contracts';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import {
  effectiveAlarmsSql,
  generatedAlarmId,
  generatedAlarmRows,
  generationId,
  parseReprocessRequest,
  planApply,
  planRevert,
} from './alarm-generations';

const request = {
  rulesetVersion: 'abc123def456',
  rulesJson: '{}',
  deviceIds: ['b', 'a', 'b'],
  fromMs: 1_000,
  toMs: 2_000,
  reason: 'sensor recalibrated',
  requestedBy: 'alice',
};

const event = (over: Partial<AlarmEvent>): AlarmEvent => ({
  eventId: 'x:1',
  alarmId: 'x',
  version: 1,
  transition: 'pending',
  state: 'pending',
  deviceId: 'a',
  ruleId: 'hot',
  ruleName: 'Too hot',
  severity: 'major',
  message: 'hot',
  tenantId: '',
  productId: '',
  siteId: '',
  ts: 1_100,
  startedAt: 1_100,
  raisedAt: 0,
  acknowledgedAt: 0,
  acknowledgedBy: '',
  clearedAt: 0,
  messageId: 'm1',
  values: { temperature: 31 },
  rulesetVersion: 'abc123def456',
  inputs: {},
  ruleText: '',
  traceId: '',
  ...over,
});

describe('alarm generations', () => {
  it('names a generation by what is asked and the data read, not by who asks or why', () => {
    const id = generationId(request, '3:42');
    assert.match(id, /^gen-[0-9a-f]{24}$/);
    assert.equal(generationId({ ...request, deviceIds: ['a', 'b'] }, '3:42'), id);
    assert.equal(
      generationId(
        { ...parseReprocessRequest({ ...request, reason: 'other', requestedBy: 'bob' }, 5_000) },
        '3:42',
      ),
      id,
    );
    assert.notEqual(generationId(request, '3:43'), id, 'other data: another generation');
    assert.notEqual(generationId({ ...request, rulesetVersion: 'fff' }, '3:42'), id);
    assert.notEqual(generationId({ ...request, toMs: 2_001 }, '3:42'), id);
    assert.notEqual(generationId({ ...request, deviceIds: [] }, '3:42'), id);
  });

  it('derives alarm ids from generation, rule, device and start; keeps each alarm latest state', () => {
    const rows = generatedAlarmRows('gen-1', [
      event({}),
      event({ version: 2, transition: 'raised', state: 'active', raisedAt: 1_300, ts: 1_300 }),
      event({ alarmId: 'y', deviceId: 'a', startedAt: 1_500, ts: 1_500 }),
      event({ version: 3, transition: 'cleared', state: 'cleared', clearedAt: 1_400, ts: 1_400 }),
    ]);
    assert.deepEqual(
      rows.map((r) => [r.alarm_id, r.state, r.version, r.started_at, r.cleared_at_ms]),
      [
        [generatedAlarmId('gen-1', 'hot', 'a', 1_100), 'cleared', 3, 1, 1_400],
        [generatedAlarmId('gen-1', 'hot', 'a', 1_500), 'pending', 1, 1, 0],
      ],
    );
    assert.equal(generatedAlarmId('gen-1', 'hot', 'a', 1_100), generatedAlarmId('gen-1', 'hot', 'a', 1_100));
    assert.notEqual(
      generatedAlarmId('gen-2', 'hot', 'a', 1_100),
      generatedAlarmId('gen-1', 'hot', 'a', 1_100),
    );
    assert.match(generatedAlarmId('gen-1', 'hot', 'a', 1_100), /^[A-Za-z0-9_.:-]{1,128}$/);
  });

  it('writes a new generation, finishes an interrupted one, re-applies a reverted one, skips an applied one', () => {
    assert.equal(planApply(undefined), 'write');
    assert.equal(planApply({ state: 'requested' }), 'resume');
    assert.equal(planApply({ state: 'applied' }), 'applied-before');
    assert.equal(planApply({ state: 'reverted' }), 'reapply');
  });

  it('reverts an applied generation only; an unknown or interrupted one is refused with its code', () => {
    assert.equal(planRevert('g', { state: 'applied' }), 'revert');
    assert.equal(planRevert('g', { state: 'reverted' }), 'reverted-before');
    const code = (f: () => unknown) => {
      try {
        f();
      } catch (error) {
        return error instanceof DmpError ? error.code : 'not a DmpError';
      }
      return 'no error';
    };
    assert.equal(
      code(() => planRevert('g', undefined)),
      'DMP_ERR_GENERATION_NOT_FOUND',
    );
    assert.equal(
      code(() => planRevert('g', { state: 'requested' })),
      'DMP_ERR_GENERATION_NOT_APPLIED',
    );
  });

  it('refuses an empty, reversed or future range and a missing reason with DMP_ERR_REPROCESS_INVALID', () => {
    const code = (input: object) => {
      try {
        parseReprocessRequest(input, 10_000);
        return 'accepted';
      } catch (error) {
        return error instanceof DmpError ? error.code : 'not a DmpError';
      }
    };
    assert.equal(code(request), 'accepted');
    for (const bad of [
      { ...request, toMs: 1_000 },
      { ...request, toMs: 500 },
      { ...request, toMs: 20_000 },
      { ...request, reason: ' ' },
      { ...request, deviceIds: Array.from({ length: 1_001 }, (_, i) => `d${i}`) },
    ])
      assert.equal(
        code(bad),
        'DMP_ERR_REPROCESS_INVALID',
        JSON.stringify({ ...bad, deviceIds: bad.deviceIds.length }),
      );
  });

  it('is the query docs/analysts.md shows ("Alarms as reprocessed")', () => {
    const docs = readFileSync(join(__dirname, '../../../../docs/analysts.md'), 'utf8');
    const sql = effectiveAlarmsSql({
      from: 'toUInt64(toUnixTimestamp(now() - INTERVAL 7 DAY)) * 1000',
      to: 'toUInt64(toUnixTimestamp(now())) * 1000',
      deviceIds: ['dev-001'],
    });
    assert.ok(docs.includes(`\`\`\`sql\n${sql}\n\`\`\``), `docs/analysts.md shows:\n${sql}`);
  });
});
