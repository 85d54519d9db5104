import type { MetricValue } from '@dmp/contracts';
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { metered, RuleErrorCode, STEP_BUDGET } from './budget';
import {
  CelDevice,
  CelMessage,
  CelState,
  compileExpression,
  evaluateCondition,
  formatInput,
  inputValues,
  type CelContext,
  type CompiledExpression,
} from './cel';
import { regexMatches } from './regex';

function compile(source: string): CompiledExpression {
  const compiled = compileExpression(source, 'any');
  assert.ok(compiled.ok, compiled.ok ? '' : compiled.message);
  return compiled.expression;
}

function context(metrics: Record<string, MetricValue>): CelContext {
  return {
    msg: new CelMessage('d1', 'm1', 'telemetry', 1, 1, 0, metrics),
    device: new CelDevice('d1', 't1', 'p1', 's1', {}),
    state: new CelState({}, metrics, {}),
  };
}

/** `count` metrics m0…m(count-1), each with a text value (what a device controls). */
function metrics(count: number, value = 'x'): Record<string, MetricValue> {
  return Object.fromEntries(Array.from({ length: count }, (_, i) => [`m${i}`, value]));
}

const elapsedMs = (run: () => unknown): number => {
  const start = performance.now();
  run();
  return performance.now() - start;
};

describe('evaluation budget', () => {
  const nested = compile('msg.metrics.all(a, msg.metrics.all(b, msg.metrics.all(c, a != "" || b != c)))');

  it('stops a comprehension whose work grows with what the device sends, with DMP_ERR_RULE_BUDGET', () => {
    // 256 metrics (the most a message may carry): 256³ ≈ 16.8 M iterations without a budget.
    const ctx = context(metrics(256));
    let outcome: ReturnType<typeof evaluateCondition> | undefined;
    const ms = elapsedMs(() => (outcome = evaluateCondition(nested, ctx)));
    assert.equal(outcome?.result, 'error');
    assert.equal(outcome.result === 'error' && outcome.code, RuleErrorCode.BudgetExceeded);
    assert.ok(ms < 200, `took ${ms.toFixed(1)} ms`);
  });

  it('lets the same expression run on small data, and stops at the same point every time', () => {
    assert.deepEqual(evaluateCondition(nested, context(metrics(10))), { result: 'match' }); // 10+100+1000
    const big = context(metrics(30)); // 30 + 900 + 27,000 steps
    const first = evaluateCondition(nested, big);
    assert.equal(first.result, 'error');
    assert.deepEqual(evaluateCondition(nested, big), first);
  });

  it('reports the budget even where exists() absorbs the errors of some elements', () => {
    // The inner comprehension fails on some elements, the outer exists() would still find a true one.
    const absorbing = compile('msg.metrics.exists(a, a == "m299" || msg.metrics.all(b, b == ""))');
    const outcome = evaluateCondition(absorbing, context(metrics(300)));
    assert.equal(outcome.result === 'error' && outcome.code, RuleErrorCode.BudgetExceeded);
  });

  it('lets a comprehension over the most metrics a message may carry run; outside an evaluation nothing is charged', () => {
    const flat = compile('msg.metrics.exists(a, a == "none")');
    assert.deepEqual(evaluateCondition(flat, context(metrics(256))), { result: 'no_match' });
    assert.equal(regexMatches('a'.repeat(STEP_BUDGET * 20), 'b', false), false);
  });
});

describe('matches() with RE2', () => {
  it('does not backtrack: a catastrophic pattern on device text stays linear', () => {
    // A backtracking engine needs 2^27 steps here (seconds); RE2 a pass over 28 characters.
    const evil = compile('msg.metrics.text.matches("^(a+)+$")');
    let outcome: ReturnType<typeof evaluateCondition> | undefined;
    const ms = elapsedMs(() => (outcome = evaluateCondition(evil, context({ text: `${'a'.repeat(27)}!` }))));
    assert.deepEqual(outcome, { result: 'no_match' });
    assert.ok(ms < 100, `took ${ms.toFixed(1)} ms`);
  });

  it('matches anywhere in the text unless anchored, as CEL specifies', () => {
    const ctx = context({ text: 'fw-2.10.3' });
    assert.equal(evaluateCondition(compile('msg.metrics.text.matches("2\\\\.10")'), ctx).result, 'match');
    assert.equal(evaluateCondition(compile('msg.metrics.text.matches("^2")'), ctx).result, 'no_match');
    assert.equal(evaluateCondition(compile('msg.metrics.text.matches("(?i)^FW")'), ctx).result, 'match');
  });

  it('refuses at load time a literal pattern that is not RE2 syntax, pointing at the pattern', () => {
    const source = 'msg.metrics.text.matches("^(?=a)b")';
    const compiled = compileExpression(source, 'bool');
    assert.equal(compiled.ok, false);
    assert.ok(!compiled.ok && compiled.message.includes('RE2'), !compiled.ok ? compiled.message : '');
    assert.equal(!compiled.ok && compiled.offset, source.indexOf('"^(?=a)b"'));
    assert.equal(compileExpression('"x".matches("(a)\\\\1")', 'bool').ok, false); // backreference
  });

  it('fails the evaluation (not the kernel) on an invalid pattern taken from data', () => {
    const dynamic = compile('"abc".matches(msg.metrics.pattern)');
    const outcome = evaluateCondition(dynamic, context({ pattern: '(?<=a)b' }));
    assert.equal(outcome.result === 'error' && outcome.code, RuleErrorCode.EvaluationFailed);
    assert.ok(outcome.result === 'error' && outcome.error.includes('RE2'));
  });

  it('charges the text it reads to the budget', () => {
    assert.throws(
      () => metered((text) => regexMatches(text, 'b', true), 'a'.repeat(STEP_BUDGET * 10)),
      (error: { code?: string }) => error.code === RuleErrorCode.BudgetExceeded,
    );
    const perElement = compile('msg.metrics.all(k, msg.metrics.all(j, msg.metrics[j].matches("^x+$")))');
    const outcome = evaluateCondition(perElement, context(metrics(80, 'x'.repeat(256))));
    assert.equal(outcome.result === 'error' && outcome.code, RuleErrorCode.BudgetExceeded);
  });
});

describe('expression inputs', () => {
  const inputs = (source: string) => compile(source).inputs.map(formatInput);

  it('lists every msg / device / state path an expression reads, longest form, in order, once', () => {
    assert.deepEqual(
      inputs(
        "state.latest.temperature > 30.0 && msg.metrics['fan-speed'] < 2.0 && device.tags.zone == 'a' && state.latest.temperature < 90.0",
      ),
      ['state.latest.temperature', 'msg.metrics["fan-speed"]', 'device.tags.zone'],
    );
    assert.deepEqual(inputs('has(msg.metrics.door) && msg.ts - state.ts.door > 1000.0'), [
      'msg.metrics.door',
      'msg.ts',
      'state.ts.door',
    ]);
    assert.deepEqual(inputs("'x' in msg.metrics || msg.metrics.x > 1.0"), ['msg.metrics.x']);
    assert.deepEqual(inputs('1 + 2 == 3'), []);
  });

  it('reads their values from the evaluation context; absent ones are null', () => {
    const ctx: CelContext = {
      msg: new CelMessage('d1', 'm1', 'telemetry', 1_000, 1_000, 0, { 'fan-speed': 3, door: true }),
      device: new CelDevice('d1', 't1', 'p1', 's1', { zone: 'a' }),
      state: new CelState({ temperature: 29 }, { temperature: 31, door: true }, { temperature: 900 }),
    };
    const when = compile(
      "state.latest.temperature > 30.0 && msg.metrics['fan-speed'] < 2.0 && device.tags.zone == 'a'",
    );
    const clear = compile('state.prev.temperature < 28.0 && has(msg.metrics.humidity) && msg.ts > 0.0');
    assert.deepEqual(inputValues([when, clear, undefined], ctx), {
      'state.latest.temperature': 31,
      'msg.metrics["fan-speed"]': 3,
      'device.tags.zone': 'a',
      'state.prev.temperature': 29,
      'msg.metrics.humidity': null,
      'msg.ts': 1_000,
    });
  });
});
