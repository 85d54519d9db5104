import { Global, Module } from '@nestjs/common';
import { RouteTopics } from '../actions/route-topics';
import { AdminTokenGuard } from '../admin/admin-token.guard';
import { RuleSetHolder } from './rule-set.holder';
import { RulesAdminController } from './rules-admin.controller';
import { RulesWatcher } from './rules.watcher';

/** The running rule set (rules + product models): loading, hot reload from files, the admin API. */
@Global()
@Module({
  controllers: [RulesAdminController],
  providers: [RuleSetHolder, RouteTopics, RulesWatcher, AdminTokenGuard],
  exports: [RuleSetHolder, RouteTopics, AdminTokenGuard],
})
export class RulesModule {}
