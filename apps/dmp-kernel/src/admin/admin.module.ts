import { adminApiAuthProvider, AdminTokenGuard } from '@dmp/http';
import { Module, type DynamicModule } from '@nestjs/common';
import { KERNEL_CONFIG, type KernelConfig } from '../config';
import { AlarmsController } from './alarms.controller';
import { CommandsController } from './commands.controller';
import { RulesAdminController } from './rules-admin.controller';

/**
 * The admin HTTP API — `/rules` (the running rule set), `/alarms` (acknowledgement) and `/commands`
 * (the command ledger) — behind the
 * admin token, with the errors of rules and alarms mapped to HTTP here, at the edge. `alarms` is the
 * module that provides AlarmService: the same module object the application imports, so it is one
 * instance.
 */
@Module({})
export class AdminModule {
  static forRoot(alarms: DynamicModule): DynamicModule {
    return {
      module: AdminModule,
      imports: [alarms],
      controllers: [RulesAdminController, AlarmsController, CommandsController],
      providers: [
        adminApiAuthProvider<KernelConfig>(KERNEL_CONFIG, (config) => config.kernel.adminToken),
        AdminTokenGuard,
      ],
    };
  }
}
