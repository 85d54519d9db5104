import type { Command } from 'commander';

/** Every `dmp` sub-command: one module per command group, each exporting a `register(program)` function. */
export const commands: ((program: Command) => void)[] = [];
