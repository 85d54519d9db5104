import type { MetricValue } from '@dmp/contracts';
import { Environment, type ASTNode, type ParseResult } from '@marcbachmann/cel-js';
import { charge, metered, rangeSize, RuleErrorCode, type RuleErrorCode as ErrorCode } from './budget';
import { patternError, regexMatches } from './regex';

/**
 * The expression language of rules: CEL (Common Expression Language) through @marcbachmann/cel-js.
 * Expressions see three variables, typed so that a misspelt field is an error when the rule set is
 * loaded rather than a silent `false` at run time:
 *
 * - `msg`: the normalized message — `deviceId`, `messageId`, `kind` ('telemetry' | 'event' | 'snapshot'),
 *   `ts` / `receivedAt` (epoch ms, double), `seq`, `metrics` (map of the metrics this message carries).
 * - `device`: `id`, `tenantId`, `productId`, `siteId`, `tags` (map of strings).
 * - `state`: the device's recent state — `prev` (last known value of every metric before this message),
 *   `latest` (`prev` updated with this message: the device's full current picture) and `ts` (epoch ms
 *   of each metric's latest value).
 *
 * Numbers are CEL doubles. CEL itself refuses `double + int` (`temperature + 1`); DMP adds those
 * mixed-arithmetic overloads (+ - * /) because every metric is a double and authors write integers.
 *
 * Every evaluation runs on a step budget (./budget.ts), and `matches()` uses RE2 (./regex.ts).
 */

export class CelMessage {
  constructor(
    readonly deviceId: string,
    readonly messageId: string,
    readonly kind: string,
    readonly ts: number,
    readonly receivedAt: number,
    readonly seq: number,
    readonly metrics: Readonly<Record<string, MetricValue>>,
  ) {}
}

export class CelDevice {
  constructor(
    readonly id: string,
    readonly tenantId: string,
    readonly productId: string,
    readonly siteId: string,
    readonly tags: Readonly<Record<string, string>>,
  ) {}
}

export class CelState {
  constructor(
    readonly prev: Readonly<Record<string, MetricValue>>,
    readonly latest: Readonly<Record<string, MetricValue>>,
    readonly ts: Readonly<Record<string, number>>,
  ) {}
}

export interface CelContext {
  msg: CelMessage;
  device: CelDevice;
  state: CelState;
}

let environment: Environment | undefined;

/** The one CEL environment (building one is expensive; compiled expressions keep a reference to it). */
export function celEnvironment(): Environment {
  if (environment) return environment;
  const env = new Environment({
    homogeneousAggregateLiterals: false,
    limits: {
      maxAstNodes: 2_000,
      maxDepth: 64,
      maxListElements: 1_000,
      maxMapEntries: 1_000,
      maxCallArguments: 16,
    },
  })
    .registerType('Message', {
      ctor: CelMessage,
      fields: {
        deviceId: 'string',
        messageId: 'string',
        kind: 'string',
        ts: 'double',
        receivedAt: 'double',
        seq: 'double',
        metrics: 'map<string, dyn>',
      },
    })
    .registerType('Device', {
      ctor: CelDevice,
      fields: {
        id: 'string',
        tenantId: 'string',
        productId: 'string',
        siteId: 'string',
        tags: 'map<string, string>',
      },
    })
    .registerType('State', {
      ctor: CelState,
      fields: { prev: 'map<string, dyn>', latest: 'map<string, dyn>', ts: 'map<string, double>' },
    })
    .registerVariable('msg', 'Message')
    .registerVariable('device', 'Device')
    .registerVariable('state', 'State');
  const mixed: [string, (a: number, b: number) => number][] = [
    ['+', (a, b) => a + b],
    ['-', (a, b) => a - b],
    ['*', (a, b) => a * b],
    ['/', (a, b) => a / b],
  ];
  for (const [op, fn] of mixed) {
    env.registerOperator(`double ${op} int`, (a: number, b: bigint) => fn(a, Number(b)));
    env.registerOperator(`int ${op} double`, (a: bigint, b: number) => fn(Number(a), b));
  }
  environment = env;
  return env;
}

/** Metric names an expression cannot do without: if one is missing, evaluating it can only fail. */
export interface RequiredKeys {
  msg: readonly string[];
  latest: readonly string[];
  prev: readonly string[];
}

export interface CompiledExpression {
  source: string;
  required: RequiredKeys;
  /** What the expression reads (`state.latest.temperature`, `device.tags.zone`, `msg.ts`): see {@link expressionInputs}. */
  inputs: readonly InputPath[];
  run(context: CelContext): unknown;
}

export type CompileResult =
  { ok: true; expression: CompiledExpression } | { ok: false; offset: number; message: string };

/**
 * Parses and type-checks an expression once, at load time. `expect: 'bool'` also refuses expressions
 * whose type is known not to be a boolean. Errors carry the offset in the expression.
 */
export function compileExpression(source: string, expect: 'bool' | 'any'): CompileResult {
  const env = celEnvironment();
  let parsed: ParseResult;
  try {
    parsed = env.parse(source);
    const check = parsed.check();
    if (!check.valid) return failure(check.error, source);
    if (expect === 'bool' && check.type !== 'bool' && check.type !== 'dyn')
      return {
        ok: false,
        offset: 0,
        message: `must be a boolean expression, this one is of type ${check.type}`,
      };
  } catch (error) {
    return failure(error, source);
  }
  const invalidPattern = instrument(parsed.ast);
  if (invalidPattern)
    return { ok: false, offset: invalidPattern.offset, message: `CEL: ${invalidPattern.message}` };
  return {
    ok: true,
    expression: {
      source,
      required: requiredKeys(parsed.ast),
      inputs: expressionInputs(parsed.ast),
      run: (context) => metered<CelContext, unknown>(parsed, context),
    },
  };
}

// ---------------------------------------------------------------------------------------------
// Budget and RE2: hooks on the checked AST
// ---------------------------------------------------------------------------------------------

/**
 * cel-js has no run-time cost limit and its `matches()` is a backtracking RegExp that cannot be
 * replaced by registering another overload. Both are hooked on the checked AST instead: once checked,
 * each call and comprehension node evaluates through its `handle` function, which is wrapped here —
 * comprehensions charge the size of their range, `matches` calls on strings go to RE2. The engine's
 * specs fail if a cel-js upgrade changes these internals (budget and RE2 specs in cel.spec.ts).
 * Returns the first literal pattern that RE2 refuses, so that it fails at load time, with its offset.
 */
function instrument(root: ASTNode): { offset: number; message: string } | undefined {
  let invalid: { offset: number; message: string } | undefined;
  const seen = new Set<object>();
  const visit = (value: unknown): void => {
    if (!value || typeof value !== 'object' || seen.has(value)) return;
    seen.add(value);
    if (Array.isArray(value)) return value.forEach(visit);
    if (isNode(value)) {
      hook(value);
      visit(value.meta.alternate);
      visit(value.meta.macro);
      return visit(value.args);
    }
    // Comprehension arguments, macro descriptions: plain objects holding nodes (not contexts or types).
    if (Object.getPrototypeOf(value) === Object.prototype) Object.values(value).forEach(visit);
  };
  const hook = (node: HookableNode): void => {
    const original = node.handle;
    if (typeof original !== 'function') return;
    if (node.op === 'comprehension') {
      node.handle = (range: unknown, ...rest: unknown[]) => {
        charge(rangeSize(range));
        return original(range, ...rest);
      };
      return;
    }
    const patternNode = matchesPattern(node);
    if (!patternNode) return;
    const literal = patternNode.op === 'value' && typeof patternNode.args === 'string';
    if (literal) {
      const error = patternError(patternNode.args as string);
      if (error) invalid ??= { offset: patternNode.start ?? 0, message: `matches(): ${error}` };
    }
    node.handle = (values: unknown, ...rest: unknown[]) => {
      const [text, pattern] = values as unknown[];
      if (typeof text === 'string' && typeof pattern === 'string')
        return regexMatches(text, pattern, literal);
      return original(values, ...rest); // other types: cel-js says there is no such overload
    };
  };
  visit(root);
  return invalid;
}

interface HookableNode {
  op: string;
  args: unknown;
  start?: number;
  meta: { alternate?: unknown; macro?: unknown };
  handle?: (...args: unknown[]) => unknown;
}

function isNode(value: object): value is HookableNode {
  return 'op' in value && typeof value.op === 'string' && 'meta' in value && 'args' in value;
}

/** The pattern argument of `text.matches(pattern)` (cel-js has no global `matches(text, pattern)`). */
function matchesPattern(node: HookableNode): HookableNode | undefined {
  if (node.op !== 'rcall' || !Array.isArray(node.args) || node.args[0] !== 'matches') return undefined;
  const args: unknown = node.args[2];
  if (!Array.isArray(args) || args.length !== 1) return undefined;
  const pattern: unknown = args[0];
  return pattern && typeof pattern === 'object' && isNode(pattern) ? pattern : undefined;
}

function failure(error: unknown, source: string): { ok: false; offset: number; message: string } {
  const e = error as { range?: { start: number }; summary?: string; message?: string } | undefined;
  const offset = Math.min(Math.max(0, e?.range?.start ?? 0), source.length);
  const message = e?.summary ?? e?.message?.split('\n')[0] ?? String(error);
  return { ok: false, offset, message: `CEL: ${message}` };
}

/** The outcome of a condition for one message. */
export type ConditionResult = 'match' | 'no_match' | 'no_data' | 'error';

/** The outcome, and for `error` its stable code and what went wrong. */
export type ConditionOutcome =
  { result: 'match' | 'no_match' | 'no_data' } | { result: 'error'; code: ErrorCode; error: string };

/**
 * Evaluates a condition. A metric the expression needs but the message (or state) lacks gives
 * `no_data` without evaluating (see requiredKeys); other evaluation errors (wrong types…, the budget
 * spent) give `error` with its code. Neither changes a condition: absent or unusable data decides nothing.
 */
export function evaluateCondition(expression: CompiledExpression, context: CelContext): ConditionOutcome {
  if (!hasRequired(expression.required, context)) return { result: 'no_data' };
  try {
    return { result: expression.run(context) === true ? 'match' : 'no_match' };
  } catch (error) {
    const code = (error as { code?: string }).code;
    if (code === 'no_such_key') return { result: 'no_data' };
    return {
      result: 'error',
      code: code === RuleErrorCode.BudgetExceeded ? code : RuleErrorCode.EvaluationFailed,
      error: (error as Error).message?.split('\n')[0] ?? String(error),
    };
  }
}

function hasRequired(required: RequiredKeys, context: CelContext): boolean {
  for (const key of required.msg) if (!Object.hasOwn(context.msg.metrics, key)) return false;
  for (const key of required.latest) if (!Object.hasOwn(context.state.latest, key)) return false;
  for (const key of required.prev) if (!Object.hasOwn(context.state.prev, key)) return false;
  return true;
}

// ---------------------------------------------------------------------------------------------
// Which metrics an expression needs
// ---------------------------------------------------------------------------------------------

type Namespace = 'msg' | 'latest' | 'prev';
type Key = `${Namespace}\u0000${string}`;

/**
 * The metrics an expression refers to (`msg.metrics.x`, `state.latest.x`, `state.prev.x`, or with a
 * literal index), except those it tests with `has()`: a condition is decided only when all of them are
 * there. This is DMP's rule for absent data, stricter than CEL's own (where `a && b` is false when `b` is
 * false even if `a` cannot be evaluated): a message that does not carry a metric the rule is about says
 * nothing about the rule — it neither raises nor clears it. Metrics tested with `has()` are optional.
 */
export function requiredKeys(ast: ASTNode): RequiredKeys {
  const referenced = new Set<Key>();
  const tested = new Set<Key>();
  walk(ast, referenced, tested, false);
  const of = (ns: Namespace) =>
    [...referenced]
      .filter((k) => !tested.has(k) && k.startsWith(`${ns}\u0000`))
      .map((k) => k.slice(ns.length + 1));
  return { msg: of('msg'), latest: of('latest'), prev: of('prev') };
}

/** `msg.metrics`, `state.latest` or `state.prev`: the maps whose keys are metrics. */
function metricsMap(node: ASTNode): Namespace | undefined {
  if (node.op !== '.') return undefined;
  const [target, field] = node.args;
  if (target.op !== 'id') return undefined;
  if (target.args === 'msg' && field === 'metrics') return 'msg';
  if (target.args === 'state' && (field === 'latest' || field === 'prev')) return field;
  return undefined;
}

function metricKey(node: ASTNode): Key | undefined {
  if (node.op === '.') {
    const [target, field] = node.args;
    const ns = metricsMap(target);
    return ns ? `${ns}\u0000${field}` : undefined;
  }
  if (node.op === '[]') {
    const [target, index] = node.args;
    const ns = metricsMap(target);
    return ns && index.op === 'value' && typeof index.args === 'string'
      ? `${ns}\u0000${index.args}`
      : undefined;
  }
  return undefined;
}

function walk(node: unknown, referenced: Set<Key>, tested: Set<Key>, insideHas: boolean): void {
  if (Array.isArray(node)) {
    for (const child of node) walk(child, referenced, tested, insideHas);
    return;
  }
  if (!node || typeof node !== 'object' || !('op' in node)) return;
  const ast = node as ASTNode;
  const key = metricKey(ast);
  if (key) (insideHas ? tested : referenced).add(key);
  if (ast.op === 'call') {
    const [name, args] = ast.args;
    walk(args, referenced, tested, insideHas || name === 'has');
    return;
  }
  if (ast.op === 'value' || ast.op === 'id') return;
  walk(ast.args, referenced, tested, insideHas);
}

// ---------------------------------------------------------------------------------------------
// What an expression reads, and the values it read (explanations)
// ---------------------------------------------------------------------------------------------

/** A path into the context: a root variable (`msg`, `device`, `state`) and the fields or literal keys after it. */
export type InputPath = readonly string[];

const ROOTS = new Set(['msg', 'device', 'state']);

/** The path a member-access node stands for (`state.latest.x`, `msg.metrics['a-b']`), if it is one. */
function pathOf(node: ASTNode): string[] | undefined {
  if (node.op === 'id')
    return typeof node.args === 'string' && ROOTS.has(node.args) ? [node.args] : undefined;
  if (node.op === '.' || node.op === '.?') {
    const [target, field] = node.args;
    const base = pathOf(target);
    return base && typeof field === 'string' ? [...base, field] : undefined;
  }
  if (node.op === '[]' || node.op === '[?]') {
    const [target, index] = node.args;
    const base = pathOf(target);
    return base && index.op === 'value' && typeof index.args === 'string' ? [...base, index.args] : undefined;
  }
  return undefined;
}

/**
 * The inputs of an expression: every `msg…`, `device…` and `state…` path it reads, longest form only
 * (`state.latest.temperature`, not also `state.latest`), in order of first appearance, `has()` tests
 * included. A map read with a computed key (`msg.metrics[name]`) appears as the map itself.
 */
export function expressionInputs(ast: ASTNode): InputPath[] {
  const found = new Map<string, string[]>();
  const visit = (node: unknown): void => {
    if (Array.isArray(node)) return node.forEach(visit);
    if (!node || typeof node !== 'object' || !('op' in node)) return;
    const ast = node as ASTNode;
    const path = pathOf(ast);
    if (path) {
      const key = formatInput(path);
      if (!found.has(key)) found.set(key, path);
      return; // the path is the whole node: its parts are not inputs of their own
    }
    if (ast.op === 'value') return;
    visit(ast.args);
  };
  visit(ast);
  const paths = [...found.values()];
  return paths.filter(
    (path) => !paths.some((other) => other.length > path.length && path.every((s, i) => other[i] === s)),
  );
}

/** `state.latest.temperature`; keys that are not identifiers in brackets: `msg.metrics["fan-speed"]`. */
export function formatInput(path: InputPath): string {
  return path
    .map((segment, i) =>
      i === 0
        ? segment
        : /^[A-Za-z_][A-Za-z0-9_]*$/.test(segment)
          ? `.${segment}`
          : `[${JSON.stringify(segment)}]`,
    )
    .join('');
}

/** The value at a path in an evaluation context; `null` when it is absent (a metric the message lacks). */
export function inputValue(path: InputPath, context: CelContext): unknown {
  let value: unknown = context[path[0] as keyof CelContext];
  for (const segment of path.slice(1)) {
    if (value === null || typeof value !== 'object') return null;
    if (value instanceof Map) value = value.get(segment);
    else value = Object.hasOwn(value, segment) ? (value as Record<string, unknown>)[segment] : undefined;
    if (value === undefined) return null;
  }
  return toPlain(value) ?? null;
}

/** The values the expressions read, by formatted path (each path once). */
export function inputValues(
  expressions: readonly (CompiledExpression | undefined)[],
  context: CelContext,
): Record<string, unknown> {
  const values: Record<string, unknown> = {};
  for (const expression of expressions)
    for (const path of expression?.inputs ?? []) {
      const key = formatInput(path);
      if (!(key in values)) values[key] = inputValue(path, context);
    }
  return values;
}

// ---------------------------------------------------------------------------------------------
// Templates: text with {{ expression }} parts (alarm messages, command parameters, webhook fields)
// ---------------------------------------------------------------------------------------------

export interface CompiledTemplate {
  source: string;
  /** Literal text and expressions, alternating. */
  parts: (string | CompiledExpression)[];
  /** True when the whole template is one expression: its value keeps its type (number, bool…). */
  single: boolean;
}

export type TemplateResult =
  { ok: true; template: CompiledTemplate } | { ok: false; offset: number; message: string };

const PLACEHOLDER = /\{\{([\s\S]*?)\}\}/g;

export function compileTemplate(source: string): TemplateResult {
  const parts: (string | CompiledExpression)[] = [];
  let last = 0;
  for (const match of source.matchAll(PLACEHOLDER)) {
    const start = match.index;
    if (start > last) parts.push(source.slice(last, start));
    const inner = match[1];
    const compiled = compileExpression(inner, 'any');
    if (!compiled.ok) return { ok: false, offset: start + 2 + compiled.offset, message: compiled.message };
    parts.push(compiled.expression);
    last = start + match[0].length;
  }
  if (last < source.length) parts.push(source.slice(last));
  const single = parts.length === 1 && typeof parts[0] !== 'string';
  return { ok: true, template: { source, parts, single } };
}

/** Renders a template; a part that cannot be evaluated (missing metric…) renders as `?`. */
export function renderTemplate(template: CompiledTemplate, context: CelContext): unknown {
  if (template.single) return toPlain(safeRun(template.parts[0] as CompiledExpression, context));
  let text = '';
  for (const part of template.parts) {
    if (typeof part === 'string') text += part;
    else {
      const value = toPlain(safeRun(part, context));
      text += value === undefined ? '?' : typeof value === 'string' ? value : JSON.stringify(value);
    }
  }
  return text;
}

function safeRun(expression: CompiledExpression, context: CelContext): unknown {
  if (!hasRequired(expression.required, context)) return undefined;
  try {
    return expression.run(context);
  } catch {
    return undefined;
  }
}

/** CEL values as JSON-friendly values: BigInt → number, Maps → objects, lists element-wise. */
export function toPlain(value: unknown): unknown {
  if (typeof value === 'bigint') return Number(value);
  if (value instanceof Map) return Object.fromEntries([...value].map(([k, v]) => [String(k), toPlain(v)]));
  if (Array.isArray(value)) return value.map(toPlain);
  if (value instanceof Date) return value.toISOString();
  if (value && typeof value === 'object' && value.constructor === Object)
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, toPlain(v)]));
  return value;
}
