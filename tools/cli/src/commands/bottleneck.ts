import { loadConfig } from '@dmp/config';
import { Command, InvalidArgumentError } from 'commander';
import { readFile, writeFile } from 'node:fs/promises';
import { z } from 'zod';
import {
  analyze,
  collectEvidence,
  formatReport,
  JaegerClient,
  PrometheusClient,
  resolveRange,
  type Evidence,
} from '../bottleneck';

/**
 * `dmp bottleneck` — which hop of the chain is slowest over a time range, from Prometheus (latency
 * histograms, throughput, backlogs) cross-checked with Jaeger (span durations of sampled message
 * traces). The analysis itself is in ../bottleneck (plain functions over the API answers).
 *
 * Configuration: PROMETHEUS_URL (default http://127.0.0.1:9090) and JAEGER_QUERY_URL (default
 * http://127.0.0.1:16686), or --prometheus / --jaeger.
 */
const cliSection = z
  .object({
    PROMETHEUS_URL: z.url().default('http://127.0.0.1:9090'),
    JAEGER_QUERY_URL: z.url().default('http://127.0.0.1:16686'),
  })
  .transform((e) => ({ prometheus: e.PROMETHEUS_URL, jaeger: e.JAEGER_QUERY_URL }));

export interface BottleneckOptions {
  since?: string;
  from?: string;
  to?: string;
  prometheus?: string;
  /** false with --no-jaeger. */
  jaeger?: string | false;
  traces: number;
  json?: boolean;
  save?: string;
  replay?: string;
}

/** Collects (or, with --replay, reads) the evidence, analyzes it and prints the report. */
export async function runBottleneck(options: BottleneckOptions): Promise<void> {
  let evidence: Evidence;
  if (options.replay) {
    evidence = JSON.parse(await readFile(options.replay, 'utf8')) as Evidence;
  } else {
    const env = loadConfig({ cli: cliSection }).cli;
    const { from, to } = resolveRange(options);
    const jaegerUrl = options.jaeger === false ? undefined : (options.jaeger ?? env.jaeger);
    evidence = await collectEvidence({
      prometheus: new PrometheusClient(options.prometheus ?? env.prometheus),
      ...(jaegerUrl ? { jaeger: new JaegerClient(jaegerUrl) } : {}),
      from,
      to,
      tracesPerOperation: options.traces,
    });
  }
  const results = Object.values(evidence.prometheus.results);
  const failed = results.filter((r) => 'error' in r);
  if (results.length > 0 && failed.length === results.length && 'error' in failed[0])
    throw new Error(failed[0].error); // Prometheus unreachable or refusing every query: nothing to analyze
  if (options.save) await writeFile(options.save, JSON.stringify(evidence) + '\n');
  const report = analyze(evidence);
  if (options.json) console.log(JSON.stringify(report, null, 2));
  else
    console.log(
      formatReport(report, {
        prometheus: evidence.prometheus.url,
        ...(evidence.jaeger ? { jaeger: evidence.jaeger.url } : {}),
      }),
    );
}

const positiveInt = (value: string) => {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1) throw new InvalidArgumentError('must be a positive integer');
  return n;
};

export function registerBottleneckCommand(program: Command): void {
  program
    .command('bottleneck')
    .description(
      'name the slowest hop over a time range: per hop p50/p99 latency, throughput and backlog (Prometheus), cross-checked with span durations (Jaeger)',
    )
    .option('--since <duration>', 'the range ends now and starts this long ago (e.g. 90s, 10m, 2h)', '10m')
    .option('--from <time>', 'start of the range (ISO 8601, or a duration ago); replaces --since')
    .option('--to <time>', 'end of the range (ISO 8601, or a duration ago; default now)')
    .option('--prometheus <url>', 'Prometheus base URL (default PROMETHEUS_URL or http://127.0.0.1:9090)')
    .option('--jaeger <url>', 'Jaeger query base URL (default JAEGER_QUERY_URL or http://127.0.0.1:16686)')
    .option('--no-jaeger', 'skip the trace cross-check')
    .option('--traces <n>', 'traces fetched per message operation', positiveInt, 50)
    .option('--json', 'print the whole analysis as JSON')
    .option('--save <file>', 'also write the raw API answers (the evidence) to this file')
    .option('--replay <file>', 'analyze evidence saved with --save instead of calling the APIs')
    .action(async (options: BottleneckOptions & { since: string }, command: Command) => {
      // --since has a default: it only counts as given when --from is not.
      const since = command.getOptionValueSource('since') === 'default' ? undefined : options.since;
      if (since !== undefined && options.from !== undefined)
        throw new Error('give --since or --from, not both');
      await runBottleneck({ ...options, since: options.from !== undefined ? undefined : (since ?? '10m') });
    });
}
