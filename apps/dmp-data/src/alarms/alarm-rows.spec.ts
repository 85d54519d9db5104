import type { AlarmEvent } from '@dmp/contracts';
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { toAlarmRows } from './alarm-rows';

const event: AlarmEvent = {
  eventId: 'alm-1:2',
  alarmId: 'alm-1',
  version: 2,
  transition: 'raised',
  state: 'active',
  deviceId: 'd1',
  ruleId: 'hot',
  ruleName: 'Hot',
  severity: 'major',
  message: 'temp 31',
  tenantId: 't',
  productId: 'p',
  siteId: 's',
  ts: 1_767_225_610_000,
  startedAt: 1_767_225_600_000,
  raisedAt: 1_767_225_610_000,
  acknowledgedAt: 0,
  acknowledgedBy: '',
  clearedAt: 0,
  messageId: 'm2',
  values: { temp: 31, door: false },
  rulesetVersion: 'abc',
  inputs: { 'state.latest.temp': 31, 'device.tags.zone': null },
  ruleText: '- id: hot\n  when: state.latest.temp > 30',
  traceId: '0af7651916cd43dd8448eb211c80319c',
};

describe('toAlarmRows', () => {
  it('gives the alarm row (state after the event, keyed by alarm, versioned) and the event row', () => {
    const { alarm, event: row } = toAlarmRows(event, 1_767_225_611_500);
    assert.deepEqual(
      [alarm.alarm_id, alarm.state, alarm.version, alarm.started_at, alarm.raised_at_ms, alarm.updated_at_ms],
      ['alm-1', 'active', 2, 1_767_225_600, 1_767_225_610_000, 1_767_225_610_000],
    );
    assert.deepEqual(JSON.parse(alarm.metrics_json), { temp: 31, door: false });
    assert.equal(alarm.inserted_at, 1_767_225_611);
    assert.deepEqual(
      [row.event_id, row.transition, row.state, row.ts, row.ts_ms, row.message_id],
      ['alm-1:2', 'raised', 'active', 1_767_225_610, 1_767_225_610_000, 'm2'],
    );
  });

  it('gives the explanation row: inputs as JSON, rule text and trace id, keyed like the event', () => {
    const { explanation } = toAlarmRows(event, 1_767_225_611_500);
    assert.deepEqual(
      [
        explanation.event_id,
        explanation.alarm_id,
        explanation.version,
        explanation.ts_ms,
        explanation.trace_id,
      ],
      ['alm-1:2', 'alm-1', 2, 1_767_225_610_000, '0af7651916cd43dd8448eb211c80319c'],
    );
    assert.deepEqual(JSON.parse(explanation.inputs_json), {
      'state.latest.temp': 31,
      'device.tags.zone': null,
    });
    assert.equal(explanation.rule_text, event.ruleText);
  });
});
