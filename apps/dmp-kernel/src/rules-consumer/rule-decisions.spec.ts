import { AlarmErrorCode, type NormalizedTelemetry } from '@dmp/contracts';
import { compileRuleSet, emptyState, evaluateMessage, type RuleDevice } from '@dmp/rules';
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { decideAfterCommit, decideStart, narrowTo, planCommit, summarize } from './rule-decisions';

const T0 = 1_767_225_600_000;
const telemetry = (messageId: string, temp: number): NormalizedTelemetry => ({
  deviceId: 'd1',
  messageId,
  kind: 'telemetry',
  ts: T0,
  metrics: { temp },
  receivedAt: T0,
  tenantId: 't',
  productId: '',
  siteId: 's',
});
const metadata = { tenantId: 'T', productId: 'P', siteId: 'S', tags: { floor: '3' } };
const device: RuleDevice = {
  deviceId: 'd1',
  tenantId: 't',
  productId: 'P',
  siteId: 's',
  tags: { floor: '3' },
};
const compiled = compileRuleSet([
  {
    path: 'r.yaml',
    text: `
rules:
  - id: hot
    when: state.latest.temp > 30.0
    actions:
      - alarm: { severity: major, message: hot }
      - command: { name: fan.on, params: {} }
      - command: { name: beep, params: {}, on: match }
      - route: { topic: hot-readings }
  - id: cold
    when: state.latest.temp < 0.0
    actions:
      - alarm: { severity: minor, message: cold }
`,
  },
]);
assert.ok(compiled.ok);
const rules = compiled.ruleSet;

describe('decideStart', () => {
  const pack = { ids: ['a1', 'a2'], position: 0 };
  it('skips a device message its pack completed before', () => {
    assert.deepEqual(
      decideStart({ telemetry: telemetry('a1', 1), pack, lastCompleted: 'a2', recent: [], metadata }),
      { kind: 'duplicate' },
    );
  });

  it('skips a copy in another RocketMQ message while it is among the recently completed', () => {
    const copy = { ids: ['a1'], position: 0 };
    assert.deepEqual(
      decideStart({
        telemetry: telemetry('a1', 1),
        pack: copy,
        lastCompleted: 'a9',
        recent: ['a1', 'a9'],
        metadata,
      }),
      { kind: 'duplicate' },
    );
  });

  it('evaluates the others as the device the message was enriched as, with the registry for the rest', () => {
    assert.deepEqual(
      decideStart({
        telemetry: telemetry('a1', 1),
        pack,
        lastCompleted: undefined,
        recent: ['a0'],
        metadata,
      }),
      { kind: 'evaluate', device },
    );
  });
});

describe('planCommit', () => {
  it('commits transitions with their triggered actions; routes and outboxes only match actions', () => {
    const evaluation = evaluateMessage(rules, telemetry('m1', 35), device, emptyState(), new Map(), {
      now: T0,
    });
    const plan = planCommit(evaluation);
    assert.deepEqual(
      plan.transitions.map((t) => t.ruleId),
      ['hot'],
    );
    assert.deepEqual(
      plan.triggered.map((a) => [a.kind, a.trigger]),
      [['command', 'raise']],
    );
    assert.deepEqual(plan.routes, [{ topic: 'hot-readings', ruleId: 'hot' }]);
    assert.deepEqual(
      plan.outbox.map((e) => [e.kind, e.id.startsWith('cmd:')]),
      [['command', true]],
      'the match command, not the route',
    );
    assert.deepEqual(summarize(evaluation), { evaluated: 2, matched: 1, transitions: 1 });
  });

  it('owes nothing when nothing matched', () => {
    const evaluation = evaluateMessage(rules, telemetry('m1', 20), device, emptyState(), new Map(), {
      now: T0,
    });
    assert.deepEqual(planCommit(evaluation), { transitions: [], triggered: [], routes: [], outbox: [] });
  });
});

describe('decideAfterCommit', () => {
  it('is done when no compare-and-set was lost', () => {
    assert.deepEqual(decideAfterCommit({ deviceId: 'd1', round: 0, conflicts: new Set() }), {
      kind: 'committed',
    });
  });

  it('evaluates only the rules that lost again, for three rounds in all, then gives up (retryable)', () => {
    const conflicts = new Set(['hot']);
    assert.deepEqual(
      [0, 1].map((round) => decideAfterCommit({ deviceId: 'd1', round, conflicts })),
      [
        { kind: 'reevaluate', rules: conflicts },
        { kind: 'reevaluate', rules: conflicts },
      ],
    );
    const last = decideAfterCommit({ deviceId: 'd1', round: 2, conflicts });
    assert.equal(last.kind, 'give-up');
    assert.equal(last.kind === 'give-up' && last.error.code, AlarmErrorCode.Conflict);
    assert.equal(last.kind === 'give-up' && last.error.retryable, true);
    assert.match(last.kind === 'give-up' ? last.error.message : '', /conditions of d1 .*\(hot\)/);
  });

  it('narrows the rule set and the fresh activations to those rules', () => {
    const fresh = evaluateMessage(rules, telemetry('m1', 35), device, emptyState(), new Map(), { now: T0 });
    const activations = new Map(fresh.transitions.map((t) => [t.ruleId, t.after!]));
    activations.set('cold', { ...activations.get('hot')!, ruleId: 'cold' });
    const narrowed = narrowTo(rules, activations, new Set(['hot']));
    assert.deepEqual(
      narrowed.ruleSet.rules.map((r) => r.id),
      ['hot'],
    );
    assert.deepEqual([...narrowed.activations.keys()], ['hot']);
    assert.equal(rules.rules.length, 2, 'the running rule set is left alone');
  });
});
