import type { NormalizedTelemetry } from '@dmp/contracts';
import { compileRuleSet, emptyState, evaluateMessage, type RuleDevice } from '@dmp/rules';
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { isEvaluated } from '../state/device-state.store';

const device: RuleDevice = { deviceId: 'd1', tenantId: 't', productId: 'p', siteId: 's', tags: {} };
const T0 = 1_767_225_600_000;
const message = (messageId: string, temp: number, offsetMs = 0): NormalizedTelemetry => ({
  deviceId: device.deviceId,
  messageId,
  kind: 'telemetry',
  ts: T0 + offsetMs,
  metrics: { temp },
  receivedAt: T0 + offsetMs,
  tenantId: 't',
  productId: 'p',
  siteId: 's',
});
const compiled = compileRuleSet([
  {
    path: 'r.yaml',
    text: `
rules:
  - id: hot
    when: state.latest.temp > 30.0
    actions:
      - alarm: { severity: major, message: hot }
      - command: { name: fan.on, params: { speed: 3 }, on: match }
`,
  },
]);
assert.ok(compiled.ok);
const rules = compiled.ruleSet;

describe('redelivery of a pack', () => {
  it('skips a device message up to the last completed one of its pack, evaluates the rest', () => {
    const ids = ['a1', 'a2', 'a3'];
    assert.deepEqual(
      ids.map((_, position) => isEvaluated(ids, position, 'a2')),
      [true, true, false],
    );
    assert.deepEqual(
      ids.map((_, position) => isEvaluated(ids, position, undefined)),
      [false, false, false],
      'nothing completed yet',
    );
    assert.deepEqual(
      ids.map((_, position) => isEvaluated(ids, position, 'z9')),
      [false, false, false],
      'the last completed message is from an earlier pack',
    );
    assert.equal(isEvaluated(['a1'], 0, 'a1'), true, 'a single redelivered message');
  });

  it('skips a copy that comes back in another RocketMQ message while it is among the recent ones', () => {
    assert.equal(isEvaluated(['a2'], 0, 'a5', ['a1', 'a2', 'a5']), true, 'forwarded twice by the edge');
    assert.equal(isEvaluated(['a6'], 0, 'a5', ['a1', 'a2', 'a5']), false, 'a new message');
  });

  it('gives an episode started by a message the same alarm id and command id when evaluated again', () => {
    const first = evaluateMessage(rules, message('m1', 35), device, emptyState(), new Map(), { now: T0 });
    const again = evaluateMessage(rules, message('m1', 35), device, emptyState(), new Map(), {
      now: T0 + 60_000,
    });
    const alarmIds = (e: typeof first) => e.transitions.map((t) => t.event?.alarmId);
    const commandIds = (e: typeof first) => e.actions.map((a) => (a.kind === 'command' ? a.commandId : ''));
    assert.equal(first.transitions.length, 1);
    assert.match(first.transitions[0].event!.alarmId, /^alm-[0-9a-f]{24}$/);
    assert.deepEqual(alarmIds(again), alarmIds(first));
    assert.deepEqual(commandIds(again), commandIds(first));

    const other = evaluateMessage(rules, message('m2', 35, 1), device, emptyState(), new Map(), { now: T0 });
    assert.notEqual(alarmIds(other)[0], alarmIds(first)[0], 'another message starts another episode');
  });
});
