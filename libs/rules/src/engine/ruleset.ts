import { alarmSeverities, RULE_ID_PATTERN, telemetryKinds, type AlarmSeverity } from '@dmp/contracts';
import { createHash } from 'node:crypto';
import { z } from 'zod';
import {
  EMPTY_PRODUCTS,
  isMetricName,
  type MetricMapping,
  type ProductModel,
  type ProductModels,
} from '../product-model';
import { linear, namedConversion } from '../units';
import { compileExpression, compileTemplate, type CompiledExpression, type CompiledTemplate } from './cel';
import { parseDuration } from './duration';
import { YamlSource, type PathSegment, type RuleError, type SourceFile } from './source';

/**
 * A rule set: every rule and product model of the rules directory, validated and compiled as one
 * immutable value. The kernel swaps the whole value at once on reload; the CLI and the benchmark use
 * the same compiler.
 */
export interface RuleSet {
  /** Content hash of the files (12 hex digits): equal files, equal version. */
  version: string;
  files: readonly SourceFile[];
  rules: readonly CompiledRule[];
  products: ProductModels;
}

/** When an action runs: on every matching message, or when the rule's condition is raised / cleared. */
export type ActionTrigger = 'match' | 'raise' | 'clear';

export interface SourcePosition {
  file: string;
  line: number;
  column: number;
}

/** A parameter tree (command params, webhook params): literal values, templated strings. */
export type CompiledParams =
  | { kind: 'literal'; value: unknown }
  | { kind: 'template'; template: CompiledTemplate }
  | { kind: 'list'; items: CompiledParams[] }
  | { kind: 'map'; entries: [string, CompiledParams][] };

export interface AlarmAction {
  kind: 'alarm';
  severity: AlarmSeverity;
  message: CompiledTemplate;
}

export interface CommandAction {
  kind: 'command';
  index: number;
  on: ActionTrigger;
  name: string;
  params: CompiledParams;
  /** The command's time to live (`ttl:`); unset: KERNEL_COMMAND_TTL_MS. */
  ttlMs?: number;
}

export interface WebhookAction {
  kind: 'webhook';
  index: number;
  on: ActionTrigger;
  /** May hold `${secret:NAME}` references, resolved by the kernel when sending. */
  url: string;
  headers: Readonly<Record<string, string>>;
  params: CompiledParams;
}

export interface RouteAction {
  kind: 'route';
  index: number;
  on: ActionTrigger;
  topic: string;
  position: SourcePosition;
}

export type RuleAction = CommandAction | WebhookAction | RouteAction;

export interface RuleScope {
  products?: ReadonlySet<string>;
  tenants?: ReadonlySet<string>;
  sites?: ReadonlySet<string>;
  kinds?: ReadonlySet<string>;
}

export interface CompiledRule {
  id: string;
  /** Disabled rules are validated like the others, but not evaluated. */
  enabled: boolean;
  name: string;
  description: string;
  position: SourcePosition;
  /** The rule's YAML as written in its file (what `dmp explain alarm` shows with each transition). */
  text: string;
  scope: RuleScope;
  when: CompiledExpression;
  /** Ends an active condition (hysteresis); without it, `when` turning false does. */
  clear?: CompiledExpression;
  /** How long `when` must hold before the condition is raised. */
  forMs: number;
  alarm?: AlarmAction;
  actions: readonly RuleAction[];
  /** Whether the rule keeps a per-device condition state (pending / active): alarms, `for`, raise/clear actions. */
  tracked: boolean;
}

/** At most this much of a rule's text travels with its alarm events. */
export const RULE_TEXT_MAX = 8192;

export type CompileOutcome = { ok: true; ruleSet: RuleSet } | { ok: false; errors: RuleError[] };

// ---------------------------------------------------------------------------------------------
// File schema
// ---------------------------------------------------------------------------------------------

const stringList = z.array(z.string().min(1)).min(1);
const trigger = z.enum(['match', 'raise', 'clear']);
const duration = z.union([z.string(), z.number()]);

const scopeSchema = z.strictObject({
  products: stringList.optional(),
  tenants: stringList.optional(),
  sites: stringList.optional(),
  kinds: z.array(z.enum(telemetryKinds)).min(1).optional(),
});

const ruleSchema = z.strictObject({
  id: z
    .string()
    .regex(RULE_ID_PATTERN, 'rule ids are 1–128 of A-Z a-z 0-9 _ . - (starting with a letter or digit)'),
  name: z.string().max(256).optional(),
  description: z.string().max(4096).optional(),
  enabled: z.boolean().default(true),
  scope: scopeSchema.optional(),
  when: z.string().min(1, 'the condition is empty'),
  clear: z.string().min(1).optional(),
  for: duration.optional(),
  actions: z.array(z.unknown()).default([]),
});

const alarmActionSchema = z.strictObject({
  severity: z.enum(alarmSeverities),
  message: z.string().max(2048).optional(),
});
const commandActionSchema = z.strictObject({
  name: z.string().regex(/^[A-Za-z0-9_.:/-]{1,128}$/, 'command names are 1–128 of A-Z a-z 0-9 _ . : / -'),
  params: z.unknown().optional(),
  on: trigger.default('raise'),
  ttl: z.union([z.string(), z.number()]).optional(),
});
const webhookActionSchema = z.strictObject({
  url: z
    .string()
    .regex(/^(https?:\/\/|\$\{secret:)/, 'must be an http(s):// URL or a ${secret:NAME} reference'),
  headers: z.record(z.string(), z.string()).default({}),
  params: z.unknown().optional(),
  on: trigger.default('raise'),
});
const routeActionSchema = z.strictObject({
  topic: z
    .string()
    .regex(/^[A-Za-z0-9_%|-]{1,127}$/, 'RocketMQ topic names are 1–127 of A-Z a-z 0-9 _ % | -'),
  on: trigger.default('match'),
});

const conversionSchema = z.union([z.string(), z.strictObject({ from: z.string(), to: z.string() })]);
const mappingSchema = z.union([
  z.string().min(1),
  z.strictObject({
    from: z.string().min(1).optional(),
    convert: conversionSchema.optional(),
    scale: z.number().optional(),
    offset: z.number().optional(),
    unit: z.string().max(32).optional(),
    decimals: z.number().int().min(0).max(12).optional(),
  }),
]);
const productSchema = z.strictObject({
  id: z.string().min(1).max(128),
  name: z.string().max(256).optional(),
  description: z.string().max(4096).optional(),
  metrics: z.record(z.string(), mappingSchema).default({}),
  keepUnmapped: z.boolean().default(true),
});

const fileSchema = z
  .strictObject({
    rules: z.array(z.unknown()).optional(),
    products: z.array(z.unknown()).optional(),
  })
  .nullable();

const ACTION_KINDS = ['alarm', 'command', 'webhook', 'route'] as const;

// ---------------------------------------------------------------------------------------------
// Compiler
// ---------------------------------------------------------------------------------------------

/** Files the rules directory may hold: YAML or JSON. */
export const isRuleFileName = (name: string): boolean => /\.(ya?ml|json)$/i.test(name);

/** Content hash of a set of files (order-independent). */
export function ruleSetVersion(files: readonly SourceFile[]): string {
  const hash = createHash('sha256');
  for (const file of [...files].sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0)))
    hash.update(file.path).update('\u0000').update(file.text).update('\u0000');
  return hash.digest('hex').slice(0, 12);
}

/**
 * Validates and compiles a rule set: YAML syntax, structure, every CEL expression (syntax, fields,
 * types), templates, durations, unit conversions, unique ids. All errors are returned, each with the
 * file, line and column it comes from; a rule set with any error is refused as a whole.
 */
export function compileRuleSet(files: readonly SourceFile[]): CompileOutcome {
  const errors: RuleError[] = [];
  const rules: CompiledRule[] = [];
  const products = new Map<string, ProductModel>();
  const ruleIds = new Map<string, SourcePosition>();
  const productIds = new Map<string, SourcePosition>();

  for (const file of files) {
    const source = new YamlSource(file);
    const syntax = source.syntaxErrors();
    if (syntax.length) {
      errors.push(...syntax);
      continue;
    }
    const data = source.toJS();
    const parsed = fileSchema.safeParse(data === undefined ? null : data);
    if (!parsed.success) {
      errors.push(...zodErrors(source, [], parsed.error));
      continue;
    }
    const content = parsed.data ?? {};
    (content.rules ?? []).forEach((value, index) => {
      const rule = compileRule(source, ['rules', index], value, errors);
      if (!rule) return;
      const previous = ruleIds.get(rule.id);
      if (previous) {
        errors.push(
          source.errorAt(
            ['rules', index, 'id'],
            `duplicate rule id "${rule.id}" (also at ${where(previous)})`,
          ),
        );
        return;
      }
      ruleIds.set(rule.id, rule.position);
      if (rule.enabled) rules.push(rule);
    });
    (content.products ?? []).forEach((value, index) => {
      const product = compileProduct(source, ['products', index], value, errors);
      if (!product) return;
      const position = source.errorAt(['products', index, 'id'], '');
      const previous = productIds.get(product.id);
      if (previous) {
        errors.push({
          ...position,
          message: `duplicate product id "${product.id}" (also at ${where(previous)})`,
        });
        return;
      }
      productIds.set(product.id, position);
      products.set(product.id, product);
    });
  }

  if (errors.length) return { ok: false, errors: sortErrors(errors) };
  return {
    ok: true,
    ruleSet: {
      version: ruleSetVersion(files),
      files: [...files],
      rules,
      products: products.size ? { byId: products } : EMPTY_PRODUCTS,
    },
  };
}

const where = (p: SourcePosition) => `${p.file}:${p.line}:${p.column}`;

function sortErrors(errors: RuleError[]): RuleError[] {
  return errors.sort((a, b) =>
    a.file !== b.file ? (a.file < b.file ? -1 : 1) : a.line - b.line || a.column - b.column,
  );
}

function zodErrors(source: YamlSource, base: readonly PathSegment[], error: z.ZodError): RuleError[] {
  return error.issues.map((issue) => {
    const path = [...base, ...(issue.path as PathSegment[])];
    if (issue.code === 'unrecognized_keys') {
      const key = issue.keys[0];
      return source.errorAtKey([...path, key], `unknown field "${key}"`);
    }
    const field = path.length ? String(path[path.length - 1]) : '';
    const label = typeof path[path.length - 1] === 'number' || !field ? '' : `${field}: `;
    return source.errorAt(path, `${label}${issue.message}`);
  });
}

function compileRule(
  source: YamlSource,
  path: PathSegment[],
  value: unknown,
  errors: RuleError[],
): CompiledRule | undefined {
  const parsed = ruleSchema.safeParse(value);
  if (!parsed.success) {
    errors.push(...zodErrors(source, path, parsed.error));
    return undefined;
  }
  const spec = parsed.data;
  const before = errors.length;
  const position = positionOf(source, [...path, 'id']);

  const when = expression(source, [...path, 'when'], spec.when, 'bool', errors);
  const clear =
    spec.clear === undefined ? undefined : expression(source, [...path, 'clear'], spec.clear, 'bool', errors);
  let forMs = 0;
  if (spec.for !== undefined) {
    const ms = parseDuration(spec.for);
    if (ms === undefined)
      errors.push(
        source.errorAt(
          [...path, 'for'],
          `for: "${String(spec.for)}" is not a duration (e.g. 30s, 500ms, 5m, 1h)`,
        ),
      );
    else forMs = ms;
  }

  let alarm: AlarmAction | undefined;
  const actions: RuleAction[] = [];
  spec.actions.forEach((item, index) => {
    const at = [...path, 'actions', index];
    if (typeof item !== 'object' || item === null || Array.isArray(item)) {
      errors.push(
        source.errorAt(
          at,
          `an action is one of ${ACTION_KINDS.join(', ')}: e.g. "- alarm: { severity: major }"`,
        ),
      );
      return;
    }
    const keys = Object.keys(item);
    if (keys.length !== 1 || !(ACTION_KINDS as readonly string[]).includes(keys[0])) {
      errors.push(
        source.errorAtKey(
          keys.length
            ? [...at, keys.find((k) => !(ACTION_KINDS as readonly string[]).includes(k)) ?? keys[1]]
            : at,
          `an action has exactly one of ${ACTION_KINDS.join(', ')}; found ${keys.map((k) => `"${k}"`).join(', ') || 'none'}`,
        ),
      );
      return;
    }
    const kind = keys[0] as (typeof ACTION_KINDS)[number];
    const body = (item as Record<string, unknown>)[kind] ?? {};
    const bodyPath = [...at, kind];
    switch (kind) {
      case 'alarm': {
        const a = alarmActionSchema.safeParse(body);
        if (!a.success) return void errors.push(...zodErrors(source, bodyPath, a.error));
        if (alarm) return void errors.push(source.errorAt(at, 'a rule raises at most one alarm'));
        const message = template(
          source,
          [...bodyPath, 'message'],
          a.data.message ?? spec.name ?? spec.id,
          errors,
        );
        if (message) alarm = { kind: 'alarm', severity: a.data.severity, message };
        return;
      }
      case 'command': {
        const c = commandActionSchema.safeParse(body);
        if (!c.success) return void errors.push(...zodErrors(source, bodyPath, c.error));
        const params = compileParams(source, [...bodyPath, 'params'], c.data.params ?? {}, errors);
        const ttlMs = c.data.ttl === undefined ? undefined : parseDuration(c.data.ttl);
        if (c.data.ttl !== undefined && (ttlMs === undefined || ttlMs < 1_000))
          return void errors.push(
            source.errorAt(
              [...bodyPath, 'ttl'],
              `ttl: "${String(c.data.ttl)}" is not a duration of at least 1s (e.g. 30s, 5m)`,
            ),
          );
        actions.push({
          kind: 'command',
          index,
          on: c.data.on,
          name: c.data.name,
          params,
          ...(ttlMs !== undefined ? { ttlMs } : {}),
        });
        return;
      }
      case 'webhook': {
        const w = webhookActionSchema.safeParse(body);
        if (!w.success) return void errors.push(...zodErrors(source, bodyPath, w.error));
        const params = compileParams(source, [...bodyPath, 'params'], w.data.params ?? {}, errors);
        actions.push({
          kind: 'webhook',
          index,
          on: w.data.on,
          url: w.data.url,
          headers: w.data.headers,
          params,
        });
        return;
      }
      case 'route': {
        const r = routeActionSchema.safeParse(body);
        if (!r.success) return void errors.push(...zodErrors(source, bodyPath, r.error));
        actions.push({
          kind: 'route',
          index,
          on: r.data.on,
          topic: r.data.topic,
          position: positionOf(source, [...bodyPath, 'topic']),
        });
        return;
      }
    }
  });

  if (spec.actions.length === 0)
    errors.push(
      source.errorAt(
        [...path, 'actions'],
        `rule "${spec.id}" has no actions: add an alarm, command, webhook or route`,
      ),
    );
  if (clear && !alarm && !actions.some((a) => a.on !== 'match'))
    errors.push(
      source.errorAt(
        [...path, 'clear'],
        'clear: only rules with an alarm or raise/clear actions have a condition to clear',
      ),
    );
  if (errors.length > before || !when) return undefined;

  const scope: RuleScope = {
    ...(spec.scope?.products ? { products: new Set(spec.scope.products) } : {}),
    ...(spec.scope?.tenants ? { tenants: new Set(spec.scope.tenants) } : {}),
    ...(spec.scope?.sites ? { sites: new Set(spec.scope.sites) } : {}),
    ...(spec.scope?.kinds ? { kinds: new Set(spec.scope.kinds) } : {}),
  };
  return {
    id: spec.id,
    enabled: spec.enabled,
    name: spec.name ?? spec.id,
    description: spec.description ?? '',
    position,
    text: source.textAt(path).slice(0, RULE_TEXT_MAX),
    scope,
    when,
    ...(clear ? { clear } : {}),
    forMs,
    ...(alarm ? { alarm } : {}),
    actions,
    tracked: !!alarm || forMs > 0 || !!clear || actions.some((a) => a.on !== 'match'),
  };
}

function positionOf(source: YamlSource, path: PathSegment[]): SourcePosition {
  const { file, line, column } = source.errorAt(path, '');
  return { file, line, column };
}

function expression(
  source: YamlSource,
  path: PathSegment[],
  text: string,
  expect: 'bool' | 'any',
  errors: RuleError[],
): CompiledExpression | undefined {
  const compiled = compileExpression(text, expect);
  if (compiled.ok) return compiled.expression;
  errors.push(
    source.errorInValue(path, compiled.offset, `${String(path[path.length - 1])}: ${compiled.message}`),
  );
  return undefined;
}

function template(
  source: YamlSource,
  path: PathSegment[],
  text: string,
  errors: RuleError[],
): CompiledTemplate | undefined {
  const compiled = compileTemplate(text);
  if (compiled.ok) return compiled.template;
  errors.push(
    source.errorInValue(path, compiled.offset, `${String(path[path.length - 1])}: ${compiled.message}`),
  );
  return undefined;
}

function compileParams(
  source: YamlSource,
  path: PathSegment[],
  value: unknown,
  errors: RuleError[],
): CompiledParams {
  if (typeof value === 'string') {
    if (!value.includes('{{')) return { kind: 'literal', value };
    const compiled = template(source, path, value, errors);
    return compiled ? { kind: 'template', template: compiled } : { kind: 'literal', value };
  }
  if (Array.isArray(value))
    return { kind: 'list', items: value.map((item, i) => compileParams(source, [...path, i], item, errors)) };
  if (value && typeof value === 'object')
    return {
      kind: 'map',
      entries: Object.entries(value).map(([k, v]) => [k, compileParams(source, [...path, k], v, errors)]),
    };
  return { kind: 'literal', value };
}

function compileProduct(
  source: YamlSource,
  path: PathSegment[],
  value: unknown,
  errors: RuleError[],
): ProductModel | undefined {
  const parsed = productSchema.safeParse(value);
  if (!parsed.success) {
    errors.push(...zodErrors(source, path, parsed.error));
    return undefined;
  }
  const spec = parsed.data;
  const before = errors.length;
  const mappings: MetricMapping[] = [];
  for (const [metric, raw] of Object.entries(spec.metrics)) {
    const at = [...path, 'metrics', metric];
    if (!isMetricName(metric)) {
      errors.push(
        source.errorAt(
          at,
          `"${metric}" is not a valid metric name (a letter, then letters, digits, _ or .; at most 64)`,
        ),
      );
      continue;
    }
    const mapping = typeof raw === 'string' ? { from: raw } : raw;
    const from = mapping.from ?? metric;
    let convert: MetricMapping['convert'];
    if (mapping.convert !== undefined) {
      if (mapping.scale !== undefined || mapping.offset !== undefined) {
        errors.push(source.errorAt([...at, 'convert'], 'use either convert or scale/offset, not both'));
        continue;
      }
      const conversion = namedConversion(mapping.convert);
      if (typeof conversion === 'string') {
        errors.push(source.errorAt([...at, 'convert'], `convert: ${conversion}`));
        continue;
      }
      convert = conversion;
    } else if (mapping.scale !== undefined || mapping.offset !== undefined) {
      convert = linear(mapping.scale ?? 1, mapping.offset ?? 0);
    }
    mappings.push({ metric, from, ...(convert ? { convert } : {}), decimals: mapping.decimals ?? 6 });
  }
  if (errors.length > before) return undefined;
  return { id: spec.id, name: spec.name ?? spec.id, mappings, keepUnmapped: spec.keepUnmapped };
}
