#!/usr/bin/env node
/**
 * `npm run bench [-- SUITE… --quick --keep --rates 1000,2000 --step-seconds 30 --hops mqtt,data --messages 100000 --list]`: runs benchmark suites (all by default), prints a table
 * per suite and writes `bench-results/<suite>.json` (with the machine and Node.js it ran on).
 */
import { Command, InvalidArgumentError, Option } from 'commander';
import { mkdir, writeFile } from 'node:fs/promises';
import { cpus, totalmem } from 'node:os';
import { join, resolve } from 'node:path';
import { suites } from './suites';
import { parseHops } from './suites/hops/analysis';
import { formatNumber, formatTable, type Measurement } from './suite';

const RESULTS_DIR = resolve(__dirname, '../../../../bench-results');

function table(rows: Measurement[]): string {
  return formatTable(
    ['measurement', 'value', 'unit'],
    rows.map((m) => [m.name, formatNumber(m.value), m.unit]),
  );
}

function positiveNumber(value: string): number {
  const n = Number(value);
  if (!Number.isFinite(n) || n <= 0) throw new InvalidArgumentError('must be a positive number');
  return n;
}
const rateList = (value: string) => value.split(',').map((v) => positiveNumber(v.trim()));

async function main(): Promise<void> {
  const program = new Command('bench')
    .description('DMP benchmarks')
    .argument('[suites...]', `suites to run (default: all of ${suites.map((s) => s.name).join(', ')})`)
    .addOption(
      new Option('--quick', 'smaller workloads, shorter steps (a few minutes in all)').env('BENCH_QUICK'),
    )
    .option('--keep', 'keep what suites created on the servers (the chain suite: its ClickHouse database)')
    .option('--rates <list>', 'offered rates to step through, msg/s, comma-separated (chain)', rateList)
    .option('--step-seconds <n>', 'duration of one step (chain)', positiveNumber)
    .option(
      '--hops <list>',
      'hops to measure alone: mqtt, kernel, data, comma-separated (hops)',
      (v: string) => {
        try {
          return parseHops(v);
        } catch (error) {
          throw new InvalidArgumentError(error instanceof Error ? error.message : String(error));
        }
      },
    )
    .option('--messages <n>', 'messages measured per hop (hops)', positiveNumber)
    .option('--list', 'list the suites')
    .parse(process.argv);
  const options = program.opts<{
    quick?: boolean;
    list?: boolean;
    keep?: boolean;
    rates?: number[];
    stepSeconds?: number;
    hops?: ReturnType<typeof parseHops>;
    messages?: number;
  }>();
  if (options.list) {
    for (const suite of suites) console.log(`${suite.name.padEnd(12)} ${suite.description}`);
    return;
  }
  const wanted = program.args.length ? program.args : suites.map((s) => s.name);
  const unknown = wanted.filter((name) => !suites.some((s) => s.name === name));
  if (unknown.length) throw new Error(`unknown suite(s): ${unknown.join(', ')} (see --list)`);

  await mkdir(RESULTS_DIR, { recursive: true });
  const environment = {
    node: process.version,
    cpu: cpus()[0]?.model ?? 'unknown',
    cpus: cpus().length,
    memoryGiB: Math.round(totalmem() / 2 ** 30),
    platform: `${process.platform}-${process.arch}`,
  };
  for (const suite of suites.filter((s) => wanted.includes(s.name))) {
    console.log(`\n▶ ${suite.name}: ${suite.description}`);
    const startedAt = new Date();
    const result = await suite.run({
      quick: !!options.quick,
      keep: !!options.keep,
      rates: options.rates,
      stepSeconds: options.stepSeconds,
      hops: options.hops,
      messages: options.messages && Math.round(options.messages),
    });
    console.log(table(result.measurements));
    for (const extra of result.tables ?? [])
      console.log(`\n  ${extra.title}\n${formatTable(extra.columns, extra.rows)}`);
    const file = join(RESULTS_DIR, `${suite.name}.json`);
    await writeFile(
      file,
      `${JSON.stringify({ suite: suite.name, summary: result.summary, startedAt: startedAt.toISOString(), quick: !!options.quick, environment, ...result }, null, 2)}\n`,
    );
    console.log(`  → ${file}`);
  }
}

main().catch((error: unknown) => {
  console.error(error instanceof Error ? error.message : error);
  process.exit(1);
});
