import type { NormalizedTelemetry } from '@dmp/contracts';
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  acknowledge,
  emptyState,
  evaluateMessage,
  raiseIfDue,
  type Activation,
  type DeviceState,
  type MessageEvaluation,
  type RuleDevice,
} from './evaluate';
import { compileRuleSet, type RuleSet } from './ruleset';

function ruleSet(yaml: string): RuleSet {
  const outcome = compileRuleSet([{ path: 'r.yaml', text: yaml }]);
  assert.ok(outcome.ok, outcome.ok ? '' : JSON.stringify(outcome.errors));
  return outcome.ruleSet;
}

const device: RuleDevice = {
  deviceId: 'd1',
  tenantId: 't1',
  productId: 'p1',
  siteId: 's1',
  tags: { floor: '3' },
};
const T0 = 1_767_225_600_000;

/** Feeds messages through the engine the way the kernel does, keeping state and activations in memory. */
class Harness {
  state: DeviceState = emptyState();
  activations = new Map<string, Activation>();
  ids = 0;
  constructor(readonly rules: RuleSet) {}

  /** A message measured at T0 + offsetMs (device clock) and received at T0 + receivedMs. */
  send(
    offsetMs: number,
    metrics: NormalizedTelemetry['metrics'],
    now = T0 + offsetMs,
    receivedMs = offsetMs,
    seq?: number,
  ): MessageEvaluation {
    const message: NormalizedTelemetry = {
      deviceId: device.deviceId,
      messageId: `m${offsetMs}-${seq ?? ''}`,
      kind: 'telemetry',
      ts: T0 + offsetMs,
      ...(seq === undefined ? {} : { seq }),
      metrics,
      receivedAt: T0 + receivedMs,
      tenantId: device.tenantId,
      productId: device.productId,
      siteId: device.siteId,
    };
    const result = evaluateMessage(this.rules, message, device, this.state, this.activations, {
      now,
      newId: () => `a${++this.ids}`,
    });
    this.apply(result.transitions);
    this.state = result.state;
    return result;
  }

  apply(transitions: MessageEvaluation['transitions']): void {
    for (const t of transitions)
      if (t.after) this.activations.set(t.ruleId, t.after);
      else this.activations.delete(t.ruleId);
  }
}

const ALARM = `
rules:
  - id: hot
    name: Hot
    when: state.latest.temp > 30.0
    clear: state.latest.temp < 28.0
    for: 10s
    actions:
      - alarm: { severity: major, message: 'temp {{ state.latest.temp }} on {{ device.id }}' }
      - command: { name: fan.set, params: { on: true, speed: '{{ state.latest.temp - 25 }}' } }
      - command: { name: fan.set, params: { on: false }, on: clear }
`;

describe('evaluateMessage: alarm lifecycle', () => {
  it('goes pending, raises once the duration held (message time), keeps, and clears below the clear threshold', () => {
    const h = new Harness(ruleSet(ALARM));
    let r = h.send(0, { temp: 31 });
    assert.deepEqual(
      r.transitions.map((t) => t.transition),
      ['pending'],
    );
    assert.equal(r.transitions[0].event?.state, 'pending');
    assert.equal(r.transitions[0].event?.message, 'temp 31 on d1');
    assert.equal(r.actions.length, 0, 'nothing runs while pending');

    r = h.send(5_000, { temp: 32 });
    assert.deepEqual(r.transitions, [], 'still pending after 5 s');

    r = h.send(12_000, { humidity: 50 });
    assert.deepEqual(
      r.transitions.map((t) => [t.transition, t.ts]),
      [['raised', T0 + 10_000]],
    );
    const raised = r.transitions[0].event!;
    assert.deepEqual(raised.inputs, { 'state.latest.temp': 32 }, 'what the conditions read at the raise');
    assert.match(raised.ruleText, /^ {2}- id: hot\n {4}name: Hot\n[\s\S]*on: clear }$/);
    assert.equal(raised.alarmId, 'a1');
    assert.equal(raised.version, 2);
    assert.equal(raised.raisedAt, T0 + 10_000);
    assert.deepEqual(
      r.actions.map((a) => a.kind === 'command' && [a.name, a.params]),
      [['fan.set', { on: true, speed: 7 }]],
    );

    r = h.send(20_000, { temp: 29 });
    assert.deepEqual(r.transitions, [], 'between the thresholds: still active (hysteresis)');

    r = h.send(25_000, { temp: 27.5 });
    assert.deepEqual(
      r.transitions.map((t) => t.transition),
      ['cleared'],
    );
    const cleared = r.transitions[0].event!;
    assert.deepEqual(
      [cleared.state, cleared.version, cleared.clearedAt, cleared.startedAt],
      ['cleared', 3, T0 + 25_000, T0],
    );
    assert.deepEqual(
      r.actions.map((a) => a.kind === 'command' && a.params),
      [{ on: false }],
    );
    assert.equal(h.activations.size, 0);
  });

  it('cancels a pending condition that ends before its duration, and ignores messages without the metric', () => {
    const h = new Harness(ruleSet(ALARM));
    h.send(0, { temp: 31 });
    assert.deepEqual(
      h.send(3_000, { other: 1 }).results,
      [{ ruleId: 'hot', result: 'match' }],
      'state still says hot',
    );
    const r = h.send(4_000, { temp: 25 });
    assert.deepEqual(
      r.transitions.map((t) => [t.transition, t.event?.state]),
      [['cancelled', 'cancelled']],
    );
    assert.equal(h.activations.size, 0);

    const fresh = new Harness(ruleSet(ALARM));
    assert.deepEqual(fresh.send(0, { humidity: 3 }).results, [{ ruleId: 'hot', result: 'no_data' }]);
  });

  it('raises by timer when no message comes (wall clock), dated since + for', () => {
    const rules = ruleSet(ALARM);
    const h = new Harness(rules);
    h.send(0, { temp: 35 }, 1_000_000);
    const pending = h.activations.get('hot')!;
    assert.equal(pending.dueAt, 1_010_000);
    assert.equal(raiseIfDue(rules, rules.rules[0], pending, device, h.state, { now: 1_009_999 }), undefined);
    const due = raiseIfDue(rules, rules.rules[0], pending, device, h.state, { now: 1_010_000 })!;
    assert.equal(due.transition.transition, 'raised');
    assert.equal(due.transition.ts, T0 + 10_000);
    assert.equal(due.transition.event?.messageId, '');
    assert.equal(due.actions.length, 1);
  });

  it('acknowledges an active alarm once; clearing keeps who acknowledged it', () => {
    const rules = ruleSet(ALARM.replace('for: 10s', 'for: 0s'));
    const h = new Harness(rules);
    h.send(0, { temp: 31 });
    const active = h.activations.get('hot')!;
    assert.equal(active.state, 'active');
    const ack = acknowledge(rules, active, 'alice', T0 + 1_000, h.state.values);
    assert.ok(!('refused' in ack));
    assert.equal(ack.event?.state, 'acknowledged');
    assert.equal(ack.event?.acknowledgedBy, 'alice');
    h.apply([ack]);
    const again = acknowledge(rules, h.activations.get('hot')!, 'bob', T0 + 2_000, {});
    assert.ok('refused' in again);
    const cleared = h.send(5_000, { temp: 20 }).transitions[0].event!;
    assert.deepEqual([cleared.state, cleared.acknowledgedBy, cleared.version], ['cleared', 'alice', 3]);
  });

  it('gives the same command id for the same cause (a redelivered message resends, not duplicates)', () => {
    const rules = ruleSet(ALARM.replace('for: 10s', 'for: 0s'));
    const first = new Harness(rules).send(0, { temp: 31 }).actions[0];
    const again = new Harness(rules).send(0, { temp: 31 }).actions[0];
    assert.ok(first.kind === 'command' && again.kind === 'command');
    assert.equal(first.commandId, again.commandId);
  });
});

describe('evaluateMessage: the device state (state.latest)', () => {
  const rules = () => ruleSet(ALARM.replace('for: 10s', 'for: 0s'));

  it('a value stamped ahead of its arrival does not hold off the next current one: current data clears', () => {
    const h = new Harness(rules());
    // The device's clock runs a minute ahead: measured "at 60 s", received at 0 s.
    const hot = h.send(60_000, { temp: 46 }, T0, 0);
    assert.deepEqual(
      hot.transitions.map((t) => t.transition),
      ['raised'],
    );
    assert.equal(h.state.ts.temp, T0, 'dated when it arrived, not a minute ahead');
    // A current reading, one second later by the real clock: it replaces the value and clears the alarm.
    const cool = h.send(1_000, { temp: 20 });
    assert.deepEqual(cool.state.values, { temp: 20 });
    assert.deepEqual(
      cool.transitions.map((t) => t.transition),
      ['cleared'],
    );
    assert.equal(h.activations.size, 0);
  });

  it('a late message (backfill) does not overwrite a newer value, and is evaluated on the newer one', () => {
    const h = new Harness(rules());
    h.send(10_000, { temp: 20 });
    // Measured at 0 s, received at 20 s (from the device's buffer): the newer 20 °C stands.
    const late = h.send(0, { temp: 46, humidity: 40 }, T0 + 20_000, 20_000);
    assert.deepEqual(late.state.values, { temp: 20, humidity: 40 });
    assert.deepEqual(late.state.ts, { temp: T0 + 10_000, humidity: T0 });
    assert.deepEqual(late.transitions, []);
  });

  it('the same time replaces: arrival order breaks ties when a message has no seq', () => {
    const h = new Harness(rules());
    h.send(0, { temp: 46 });
    const r = h.send(0, { temp: 20 });
    assert.deepEqual(r.state.values, { temp: 20 });
    assert.deepEqual(
      r.transitions.map((t) => t.transition),
      ['cleared'],
    );
  });

  it('of the same time, the later message by seq stands, in whichever order the two arrive', () => {
    // A change event (seq 8, 20 °C) and the snapshot before it (seq 7, still 46 °C) of one millisecond,
    // consumed from their two topics with the event first: the snapshot must not raise the alarm again.
    const h = new Harness(rules());
    h.send(0, { temp: 46 }, T0, 0, 6);
    const cleared = h.send(1_000, { temp: 20 }, T0 + 1_000, 1_000, 8);
    assert.deepEqual(
      cleared.transitions.map((t) => t.transition),
      ['cleared'],
    );
    const snapshot = h.send(1_000, { temp: 46, humidity: 40 }, T0 + 1_000, 1_000, 7);
    assert.deepEqual(snapshot.state.values, { temp: 20, humidity: 40 });
    assert.deepEqual(snapshot.state.seq, { temp: 8, humidity: 7 });
    assert.deepEqual(snapshot.transitions, []);
    // A redelivered copy of the event (the same seq) replaces its own value.
    assert.deepEqual(h.send(1_000, { temp: 20 }, T0 + 1_000, 1_000, 8).state.values.temp, 20);
  });
});

describe('evaluateMessage: conditions and scope', () => {
  it('routes every matching message, sees previous values and device metadata, honours scope', () => {
    const rules = ruleSet(`
rules:
  - id: jump
    when: state.latest.temp - state.prev.temp > 2 && device.tags.floor == "3"
    actions: [{ route: { topic: jumps } }]
  - id: events-only
    scope: { kinds: [event] }
    when: "true"
    actions: [{ route: { topic: events } }]
  - id: other-product
    scope: { products: [nope] }
    when: "true"
    actions: [{ route: { topic: never } }]
`);
    const h = new Harness(rules);
    assert.deepEqual(h.send(0, { temp: 20 }).results, [{ ruleId: 'jump', result: 'no_data' }]);
    const r = h.send(1_000, { temp: 23 });
    assert.deepEqual(r.results, [{ ruleId: 'jump', result: 'match' }]);
    assert.deepEqual(
      r.actions.map((a) => a.kind === 'route' && a.topic),
      ['jumps'],
    );
    assert.deepEqual(r.transitions, [], 'a route-only rule keeps no condition state');
    assert.equal(h.send(2_000, { temp: 24 }).results[0].result, 'no_match');
  });

  it('reports evaluation errors without changing anything', () => {
    const h = new Harness(
      ruleSet(`
rules:
  - id: typed
    when: msg.metrics.mode > 3
    actions: [{ alarm: { severity: info } }]
`),
    );
    const r = h.send(0, { mode: 'eco' });
    assert.equal(r.results[0].result, 'error');
    assert.equal(r.results[0].code, 'DMP_ERR_RULE_EVALUATION');
    assert.match(r.results[0].error ?? '', /no such overload/);
    assert.deepEqual(r.transitions, []);
  });

  it('stops a rule that runs out of its budget on what a device sent, and the other rules go on', () => {
    const h = new Harness(
      ruleSet(`
rules:
  - id: pairs
    when: msg.metrics.exists(a, msg.metrics.exists(b, a != b && msg.metrics[a] == msg.metrics[b]))
    actions: [{ alarm: { severity: info } }]
  - id: hot
    when: has(msg.metrics.temp) && msg.metrics.temp > 30.0
    actions: [{ route: { topic: hot } }]
`),
    );
    // 200 distinct metrics: 200² pairs compared, beyond the budget.
    const wide = Object.fromEntries(Array.from({ length: 200 }, (_, i) => [`m${i}`, 1000 + i]));
    const r = h.send(0, { ...wide, temp: 31 });
    assert.deepEqual(
      r.results.map(({ ruleId, result, code }) => [ruleId, result, code]),
      [
        ['pairs', 'error', 'DMP_ERR_RULE_BUDGET'],
        ['hot', 'match', undefined],
      ],
    );
    assert.deepEqual(r.transitions, [], 'an exhausted budget decides nothing');
    assert.deepEqual(
      r.actions.map((a) => a.ruleId),
      ['hot'],
    );
    // A narrow message of the same device is evaluated in full.
    assert.equal(h.send(1_000, { a: 1, b: 1 }).results[0].result, 'match');
  });

  it('keeps the newest value per metric when an older message arrives late', () => {
    const h = new Harness(
      ruleSet('rules:\n  - id: x\n    when: "true"\n    actions: [{ route: { topic: t } }]\n'),
    );
    h.send(5_000, { temp: 30 });
    h.send(1_000, { temp: 10, hum: 40 });
    assert.deepEqual(h.state.values, { temp: 30, hum: 40 });
  });
});
