import type { Command } from 'commander';

/** Every `dmp` sub-command: one module per command group, each exporting a `register(program)` function. */
export const commands: ((program: Command) => void)[] = [];
import { registerDevicesCommand } from './devices'; commands.push(registerDevicesCommand);
import { registerDeadLettersCommand } from './dead-letters'; commands.push(registerDeadLettersCommand);
import { registerBottleneckCommand } from './bottleneck'; commands.push(registerBottleneckCommand);
import { registerRulesCommand } from './rules'; commands.push(registerRulesCommand);
