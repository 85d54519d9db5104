#!/usr/bin/env node
// Every PromQL expression DMP ships — Grafana panel targets and template variables
// (docker/grafana/dashboards/*.json) and alert rules (docker/prometheus/alerts/*.yml) — as a list,
// and a check that runs each one against a Prometheus.
//
//   node docker/tools/promql.mjs list                      JSON array on stdout (see QueryEntry)
//   node docker/tools/promql.mjs check [--url URL]         run every query; exit 1 on any error
//        [--require-data]                                  …and on empty results from app metrics
//        [--rate-interval 1m]                              what $__rate_interval becomes
//
// Grafana variables are substituted so the text is plain PromQL: $__rate_interval → --rate-interval,
// $__interval → 15s, $__range → 1h, any other $var / ${var} (template variables, used only in
// regex matchers) → .+ ; a `label_values(selector, label)` variable becomes `selector`.
// `external: true` marks queries on series the local stack cannot have (EMQX, rocketmq-exporter,
// Jaeger's collector): empty results there are expected outside the compose deployment.
// `failureOnly: true` (heuristic) marks queries that stay empty while nothing fails. --require-data
// skips both kinds, and alert rules (an alert expression is empty while all is well).
// Importable too: `const { collectQueries, runQuery } = await import('<repo>/docker/tools/promql.mjs')`.
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import YAML from 'yaml';

const DOCKER_DIR = join(dirname(fileURLToPath(import.meta.url)), '..');
const REPO_DIR = join(DOCKER_DIR, '..');
const DASHBOARD_DIR = join(DOCKER_DIR, 'grafana', 'dashboards');
const RULES_DIR = join(DOCKER_DIR, 'prometheus', 'alerts');

/** Metric name prefixes only the compose deployment has. */
const EXTERNAL_PREFIXES = ['emqx_', 'rocketmq_', 'otelcol_'];

/**
 * Labelled series that only appear once something goes wrong (prom-client exports a labelled counter
 * from its first increment), and label filters that select only failures: a healthy run under load
 * leaves these queries empty.
 */
const FAILURE_METRICS =
  /^dmp_(mqtt_rejected_total|mqtt_kernel_abandoned_total|kernel_shed_total|rocketmq_receive_errors_total|rocketmq_settle_errors_total|rocketmq_invisible_renewals_total|clickhouse_insert_errors_total)$/;
// …and the dead-letter topic's own series (its backlog age, letters sent to it).
const FAILURE_FILTERS =
  /\b(outcome|result)\s*!=|\boutcome\s*=~\s*"(dead_letter|failed)|\btopic\s*=~\s*"[^"]*dead_letter/;

const KEYWORDS = new Set([
  'and',
  'or',
  'unless',
  'by',
  'without',
  'on',
  'ignoring',
  'group_left',
  'group_right',
  'offset',
  'bool',
  'inf',
  'nan',
  'le',
]);

/**
 * @typedef {object} QueryEntry
 * @property {'panel' | 'variable' | 'alert' | 'record'} kind
 * @property {string} file        path relative to the repository
 * @property {string} where       dashboard title › panel title (refId), or rule group › alert name
 * @property {string} raw         the expression as written (with Grafana variables)
 * @property {string} query       plain PromQL to send to Prometheus
 * @property {string[]} metrics   metric names the expression reads
 * @property {boolean} external   reads only series from EMQX / rocketmq-exporter / Jaeger
 * @property {boolean} failureOnly  (heuristic) its series exist only after errors, rejections or shedding
 */

/** Grafana variables → plain PromQL. */
export function substituteGrafanaVariables(expr, { rateInterval = '1m' } = {}) {
  return expr
    .replaceAll('$__rate_interval', rateInterval)
    .replaceAll('${__rate_interval}', rateInterval)
    .replaceAll('$__interval', '15s')
    .replaceAll('${__interval}', '15s')
    .replaceAll('$__range', '1h')
    .replace(/\$\{(\w+)(?::\w+)?\}|\$(\w+)/g, '.+');
}

/** Metric names an expression reads (a lexical approximation good for PromQL as written here). */
export function metricNames(expr) {
  const stripped = expr
    .replace(/"(?:[^"\\]|\\.)*"/g, '""') // string literals
    .replace(/\{[^}]*\}/g, ' ') // label matchers
    .replace(/\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)/g, ' ') // label lists
    .replace(/\[[^\]]*\]/g, ' '); // range and subquery selectors
  const names = new Set();
  for (const match of stripped.matchAll(/(?<![\w.:])([a-zA-Z_:][a-zA-Z0-9_:]*)(?![\w:])(?!\s*\()/g)) {
    const name = match[1];
    if (!KEYWORDS.has(name.toLowerCase())) names.add(name);
  }
  return [...names].sort();
}

function entry(kind, file, where, raw, options) {
  const labelValues = /^\s*label_values\(\s*(.+?)\s*,\s*\w+\s*\)\s*$/.exec(raw);
  const expr = labelValues ? labelValues[1] : raw;
  const query = substituteGrafanaVariables(expr, options);
  const metrics = metricNames(query);
  return {
    kind,
    file: relative(REPO_DIR, file),
    where,
    raw,
    query,
    metrics,
    external: metrics.length > 0 && metrics.every((m) => EXTERNAL_PREFIXES.some((p) => m.startsWith(p))),
    failureOnly:
      FAILURE_FILTERS.test(query) || (metrics.length > 0 && metrics.every((m) => FAILURE_METRICS.test(m))),
  };
}

function panelsOf(dashboard) {
  const out = [];
  const walk = (panels) => {
    for (const panel of panels ?? []) {
      out.push(panel);
      walk(panel.panels);
    }
  };
  walk(dashboard.panels);
  return out;
}

/** @returns {QueryEntry[]} */
export function collectQueries(options = {}) {
  const entries = [];
  for (const name of readdirSync(DASHBOARD_DIR)
    .filter((f) => f.endsWith('.json'))
    .sort()) {
    const file = join(DASHBOARD_DIR, name);
    const dashboard = JSON.parse(readFileSync(file, 'utf8'));
    for (const variable of dashboard.templating?.list ?? []) {
      const text = typeof variable.query === 'string' ? variable.query : variable.query?.query;
      if (variable.type === 'query' && text) {
        entries.push(entry('variable', file, `${dashboard.title} › $${variable.name}`, text, options));
      }
    }
    for (const panel of panelsOf(dashboard)) {
      for (const target of panel.targets ?? []) {
        if (target.expr) {
          entries.push(
            entry(
              'panel',
              file,
              `${dashboard.title} › ${panel.title} (${target.refId})`,
              target.expr,
              options,
            ),
          );
        }
      }
    }
  }
  for (const name of readdirSync(RULES_DIR)
    .filter((f) => /\.ya?ml$/.test(f))
    .sort()) {
    const file = join(RULES_DIR, name);
    const doc = YAML.parse(readFileSync(file, 'utf8'));
    for (const group of doc?.groups ?? []) {
      for (const rule of group.rules ?? []) {
        const kind = rule.alert ? 'alert' : 'record';
        entries.push(entry(kind, file, `${group.name} › ${rule.alert ?? rule.record}`, rule.expr, options));
      }
    }
  }
  return entries;
}

/** Runs one instant query; resolves to { status, error?, resultCount }. */
export async function runQuery(url, query) {
  const response = await fetch(new URL('/api/v1/query', url), {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({ query }),
  });
  const body = await response.json();
  if (body.status !== 'success')
    return { status: 'error', error: `${body.errorType}: ${body.error}`, resultCount: 0 };
  const result = body.data?.result;
  const resultCount = Array.isArray(result) ? result.length : result === undefined ? 0 : 1;
  return { status: 'success', resultCount, warnings: body.warnings ?? [] };
}

function parseArgs(argv) {
  const args = {
    command: argv[0] ?? 'list',
    url: 'http://127.0.0.1:9090',
    requireData: false,
    rateInterval: '1m',
  };
  for (let i = 1; i < argv.length; i++) {
    if (argv[i] === '--url') args.url = argv[++i];
    else if (argv[i] === '--require-data') args.requireData = true;
    else if (argv[i] === '--rate-interval') args.rateInterval = argv[++i];
    else throw new Error(`unknown option ${argv[i]}`);
  }
  return args;
}

async function main() {
  const args = parseArgs(process.argv.slice(2));
  const entries = collectQueries({ rateInterval: args.rateInterval });
  if (args.command === 'list') {
    process.stdout.write(JSON.stringify(entries, null, 2) + '\n');
    return 0;
  }
  if (args.command !== 'check') throw new Error(`unknown command ${args.command} (list | check)`);
  let failed = 0;
  let empty = 0;
  for (const e of entries) {
    const result = await runQuery(args.url, e.query);
    const noData = result.status === 'success' && result.resultCount === 0;
    if (result.status !== 'success') {
      failed++;
      console.log(`FAIL  ${e.kind.padEnd(8)} ${e.where}\n      ${e.query}\n      ${result.error}`);
    } else if (noData && args.requireData && !e.external && !e.failureOnly && e.kind !== 'alert') {
      empty++;
      console.log(`EMPTY ${e.kind.padEnd(8)} ${e.where}\n      ${e.query}`);
    } else {
      const why = e.external ? ' (external)' : e.failureOnly ? ' (failure-only)' : '';
      const note = noData ? `no data${why}` : `${result.resultCount} series`;
      const warn = result.warnings?.length ? `  warnings: ${result.warnings.join('; ')}` : '';
      console.log(`ok    ${e.kind.padEnd(8)} ${e.where}: ${note}${warn}`);
    }
  }
  console.log(
    `\n${entries.length} queries against ${args.url}: ${failed} failed${args.requireData ? `, ${empty} empty` : ''}`,
  );
  return failed > 0 || empty > 0 ? 1 : 0;
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  // exitCode, not exit(): a piped stdout must be flushed first.
  main().then(
    (code) => {
      process.exitCode = code;
    },
    (error) => {
      console.error(error instanceof Error ? error.message : error);
      process.exitCode = 2;
    },
  );
}
