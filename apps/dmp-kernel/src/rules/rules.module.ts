import { Global, Module } from '@nestjs/common';
import { RouteTopics } from '../actions/route-topics';
import { KERNEL_CONFIG, type KernelConfig } from '../config';
import { adminApiAuthProvider, AdminTokenGuard, ADMIN_API_AUTH } from '@dmp/http';
import { RuleSetHolder } from './rule-set.holder';
import { RulesAdminController } from './rules-admin.controller';
import { RulesWatcher } from './rules.watcher';

/** The running rule set (rules + product models): loading, hot reload from files, the admin API. */
@Global()
@Module({
  controllers: [RulesAdminController],
  providers: [
    RuleSetHolder,
    RouteTopics,
    RulesWatcher,
    adminApiAuthProvider<KernelConfig>(KERNEL_CONFIG, (config) => config.kernel.adminToken),
    AdminTokenGuard,
  ],
  exports: [RuleSetHolder, RouteTopics, ADMIN_API_AUTH, AdminTokenGuard],
})
export class RulesModule {}
