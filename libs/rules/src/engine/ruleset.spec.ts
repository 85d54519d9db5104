import assert from 'node:assert/strict';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { normalizeMetrics } from '../product-model';
import { compileExpression } from './cel';
import { readRuleFiles } from './loader';
import { compileRuleSet, type CompileOutcome } from './ruleset';
import { formatRuleError } from './source';

const REPO_RULES = join(__dirname, '../../../../../rules');

const compile = (files: Record<string, string>): CompileOutcome =>
  compileRuleSet(Object.entries(files).map(([path, text]) => ({ path, text })));

const errorsOf = (files: Record<string, string>): string[] => {
  const outcome = compile(files);
  assert.equal(outcome.ok, false, 'the rule set should be refused');
  return outcome.ok ? [] : outcome.errors.map(formatRuleError);
};

describe('compileRuleSet', () => {
  it('compiles the rule files under version control (rules/)', async () => {
    const outcome = compileRuleSet(await readRuleFiles(REPO_RULES));
    assert.ok(outcome.ok, outcome.ok ? '' : outcome.errors.map(formatRuleError).join('\n'));
    const ids = outcome.ruleSet.rules.map((r) => r.id);
    assert.ok(
      ids.includes('temperature-high') && ids.includes('door-open-light') && ids.includes('battery-low'),
    );
    assert.ok(outcome.ruleSet.products.byId.has('thermo-us-v1'));
    assert.match(outcome.ruleSet.version, /^[0-9a-f]{12}$/);
  });

  it("reads a command's ttl and refuses one that is no duration of at least 1s", () => {
    const outcome = compile({
      'a.yaml': [
        'rules:',
        '  - id: r1',
        '    when: msg.metrics.on == true',
        '    actions: [{ command: { name: fan.set, ttl: 2m } }, { command: { name: fan.get } }]',
      ].join('\n'),
    });
    assert.ok(outcome.ok);
    assert.deepEqual(
      outcome.ruleSet.rules[0].actions.map((a) => (a.kind === 'command' ? a.ttlMs : 'other')),
      [120_000, undefined],
    );
    const errors = errorsOf({
      'b.yaml': [
        'rules:',
        '  - id: r1',
        '    when: msg.metrics.on == true',
        '    actions:',
        '      - command: { name: fan.set, ttl: soon }',
      ].join('\n'),
    });
    assert.equal(errors.length, 1);
    assert.match(errors[0], /^b\.yaml:5:\d+: ttl: "soon" is not a duration of at least 1s/);
  });

  it('points a CEL syntax error at its line and column, in plain, quoted and block scalars', () => {
    const plain = errorsOf({
      'a.yaml': [
        'rules:',
        '  - id: r1',
        '    when: msg.metrics.temp > 30 &&',
        '    actions: [{ route: { topic: t } }]',
      ].join('\n'),
    });
    // End of the expression: after "&&" on line 3 (column 11 + 24).
    assert.deepEqual(plain, ['a.yaml:3:35: when: CEL: Unexpected token: EOF']);

    const quoted = errorsOf({
      'b.yaml': [
        'rules:',
        '  - id: r1',
        '    when: "msg.metrics.temp >> 3"',
        '    actions: [{ route: { topic: t } }]',
      ].join('\n'),
    });
    assert.deepEqual(quoted, ['b.yaml:3:30: when: CEL: Unexpected token: GT']);

    const block = errorsOf({
      'c.yaml': [
        'rules:',
        '  - id: r1',
        '    when: |',
        '      msg.metrics.temp > 30.0 &&',
        '        msg.metrics.humidity >> 3',
        '    actions: [{ route: { topic: t } }]',
      ].join('\n'),
    });
    assert.deepEqual(block, ['c.yaml:5:31: when: CEL: Unexpected token: GT']);
  });

  it('refuses misspelt fields and variables, type errors and non-boolean conditions, with positions', () => {
    const errors = errorsOf({
      'd.yaml': [
        'rules:',
        '  - id: r1',
        '    when: msg.metric.temp > 1',
        '    actions: [{ route: { topic: t } }]',
        '  - id: r2',
        '    when: msg.kind == 1',
        '    actions: [{ route: { topic: t } }]',
        '  - id: r3',
        '    when: msg.ts + 1',
        '    actions: [{ route: { topic: t } }]',
        '  - id: r4',
        '    when: temperature > 3',
        '    actions: [{ route: { topic: t } }]',
      ].join('\n'),
    });
    assert.equal(errors.length, 4);
    assert.match(errors[0], /^d\.yaml:3:15: when: CEL: No such key: metric$/);
    assert.match(errors[1], /^d\.yaml:6:11: when: CEL: no such overload: string == int$/);
    assert.match(errors[2], /^d\.yaml:9:11: .*boolean/);
    assert.match(errors[3], /^d\.yaml:12:11: when: CEL: Unknown variable: temperature$/);
  });

  it('reports structure errors where they are: unknown fields, bad values, duplicates, YAML syntax', () => {
    const errors = errorsOf({
      'e.yaml': [
        'rules:',
        '  - id: r1',
        '    wen: msg.kind == "event"',
        '    when: msg.kind == "event"',
        '    actions: [{ route: { topic: t } }]',
        '  - id: r1',
        '    when: msg.kind == "event"',
        '    for: soon',
        '    actions:',
        '      - alarm: { severity: huge }',
        '      - email: { to: x }',
      ].join('\n'),
      'f.yaml': 'rules:\n  - id: [1\n',
      'products/p.yaml':
        'products:\n  - id: p\n    metrics:\n      temperature: { from: t, convert: °F→kPa }\n',
    });
    assert.deepEqual(
      errors.map((e) => e.replace(/: .*/, '')),
      ['e.yaml:3:5', 'e.yaml:8:10', 'e.yaml:10:28', 'e.yaml:11:9', 'f.yaml:3:1', 'products/p.yaml:4:40'],
    );
    assert.match(errors[0], /unknown field "wen"/);
    assert.match(errors[1], /not a duration/);
    assert.match(errors[5], /cannot convert temperature \(°F\) to pressure/);
  });

  it('refuses a duplicate rule id across files', () => {
    const rule = 'rules:\n  - id: same\n    when: "true"\n    actions: [{ route: { topic: t } }]\n';
    assert.deepEqual(errorsOf({ 'a.yaml': rule, 'b.yaml': rule }), [
      'b.yaml:2:9: duplicate rule id "same" (also at a.yaml:2:9)',
    ]);
  });

  it('validates disabled rules too, but does not evaluate them', () => {
    assert.equal(
      errorsOf({
        'a.yaml':
          'rules:\n  - id: x\n    enabled: false\n    when: nope\n    actions: [{ route: { topic: t } }]\n',
      }).length,
      1,
    );
    const ok = compile({
      'a.yaml':
        'rules:\n  - id: x\n    enabled: false\n    when: "true"\n    actions: [{ route: { topic: t } }]\n',
    });
    assert.ok(ok.ok && ok.ruleSet.rules.length === 0);
  });
});

describe('CEL conditions', () => {
  it('needs every metric it refers to, except those tested with has()', () => {
    const required = (source: string) => {
      const compiled = compileExpression(source, 'bool');
      assert.ok(compiled.ok);
      return compiled.expression.required;
    };
    assert.deepEqual(required('msg.metrics.a > 1.0 && msg.metrics["b"] < 2.0').msg, ['a', 'b']);
    assert.deepEqual(required('msg.metrics.a > 1.0 || msg.metrics.a < -2.0').msg, ['a']);
    assert.deepEqual(required('has(msg.metrics.b) ? msg.metrics.b > 1.0 : msg.metrics.a > 1.0').msg, ['a']);
    assert.deepEqual(required('msg.metrics.a + msg.metrics.b > 1.0').msg, ['a', 'b']);
    assert.deepEqual(required('has(msg.metrics.a) && msg.metrics.a > 1.0').msg, []);
    assert.deepEqual(required('state.latest.t - state.prev.t > 2.0').latest, ['t']);
    assert.deepEqual(required('state.latest.t - state.prev.t > 2.0').prev, ['t']);
  });
});

describe('product models', () => {
  it('maps device fields to canonical metrics with declared unit conversions', () => {
    const outcome = compile({
      'products/p.yaml': [
        'products:',
        '  - id: p',
        '    metrics:',
        '      temperature: { from: temp_f, convert: °F→°C, decimals: 2 }',
        '      voltage: { from: batt_mv, convert: mV->V }',
        '      level: { from: lvl, scale: 0.5, offset: -1 }',
        '      door_open: door',
      ].join('\n'),
    });
    assert.ok(outcome.ok);
    const product = outcome.ruleSet.products.byId.get('p')!;
    const result = normalizeMetrics(product, {
      temp_f: 98.6,
      batt_mv: 3300,
      lvl: 10,
      door: true,
      rssi: -70,
      mode: 'x',
    });
    assert.deepEqual(result.metrics, {
      rssi: -70,
      mode: 'x',
      temperature: 37,
      voltage: 3.3,
      level: 4,
      door_open: true,
    });
    assert.deepEqual(normalizeMetrics(product, { temp_f: 'hot' }), {
      metrics: { temperature: 'hot' },
      skipped: ['temp_f'],
    });
  });
});
