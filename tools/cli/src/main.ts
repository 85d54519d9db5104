#!/usr/bin/env node
/**
 * `dmp` — the operators' and rule authors' command line (`npm run dmp -- <command>`).
 * Each command lives in ./commands and registers itself on the program.
 */
import { DmpError } from '@dmp/contracts';
import { Command } from 'commander';
import { commands } from './commands';

async function main(): Promise<void> {
  const program = new Command('dmp').description('DMP device data platform command line');
  for (const register of commands) register(program);
  await program.parseAsync(process.argv);
}

main().catch((error: unknown) => {
  console.error(
    error instanceof DmpError
      ? `${error.code}: ${error.message}`
      : error instanceof Error
        ? error.message
        : error,
  );
  process.exit(1);
});
