#!/usr/bin/env node
/**
 * `npm run bench [-- SUITE… --quick --list]`: runs benchmark suites (all by default), prints a table
 * per suite and writes `bench-results/<suite>.json` (with the machine and Node.js it ran on).
 */
import { Command } from 'commander';
import { mkdir, writeFile } from 'node:fs/promises';
import { cpus, totalmem } from 'node:os';
import { join, resolve } from 'node:path';
import { suites } from './suites';
import type { Measurement } from './suite';

const RESULTS_DIR = resolve(__dirname, '../../../../bench-results');

function table(rows: Measurement[]): string {
  const format = (value: number) =>
    Number.isInteger(value)
      ? value.toLocaleString('en-US')
      : value.toLocaleString('en-US', { maximumFractionDigits: 2 });
  const cells = rows.map((m) => [m.name, format(m.value), m.unit]);
  const widths = [0, 1, 2].map((i) =>
    Math.max(...cells.map((c) => c[i].length), ['measurement', 'value', 'unit'][i].length),
  );
  const line = (c: string[]) =>
    `  ${c[0].padEnd(widths[0])}  ${c[1].padStart(widths[1])}  ${c[2].padEnd(widths[2])}`;
  return [
    line(['measurement', 'value', 'unit']),
    line(widths.map((w) => '-'.repeat(w))),
    ...cells.map(line),
  ].join('\n');
}

async function main(): Promise<void> {
  const program = new Command('bench')
    .description('DMP benchmarks')
    .argument('[suites...]', `suites to run (default: all of ${suites.map((s) => s.name).join(', ')})`)
    .option('--quick', 'smaller workloads')
    .option('--list', 'list the suites')
    .parse(process.argv);
  const options = program.opts<{ quick?: boolean; list?: boolean }>();
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
    const result = await suite.run({ quick: !!options.quick });
    console.log(table(result.measurements));
    const file = join(RESULTS_DIR, `${suite.name}.json`);
    await writeFile(
      file,
      `${JSON.stringify({ suite: suite.name, startedAt: startedAt.toISOString(), quick: !!options.quick, environment, ...result }, null, 2)}\n`,
    );
    console.log(`  → ${file}`);
  }
}

main().catch((error: unknown) => {
  console.error(error instanceof Error ? error.message : error);
  process.exit(1);
});
