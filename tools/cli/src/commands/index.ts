import type { Command } from 'commander';
import { registerBottleneckCommand } from './bottleneck';
import { registerCommandsCommand } from './commands';
import { registerDeadLettersCommand } from './dead-letters';
import { registerDevicesCommand } from './devices';
import { registerExplainCommand } from './explain';
import { registerRulesCommand } from './rules';
import { registerTelemetryCommand } from './telemetry';

/** Every `dmp` sub-command: one module per command group, each exporting a `register(program)` function. */
export const commands: ((program: Command) => void)[] = [
  registerDevicesCommand,
  registerDeadLettersCommand,
  registerRulesCommand,
  registerBottleneckCommand,
  registerExplainCommand,
  registerCommandsCommand,
  registerTelemetryCommand,
];
