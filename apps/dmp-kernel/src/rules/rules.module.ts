import { Global, Module } from '@nestjs/common';
import { RouteTopics } from '../actions/route-topics';
import { RuleSetHolder } from './rule-set.holder';
import { RulesWatcher } from './rules.watcher';

/** The running rule set (rules + product models): loading and hot reload from files (admin API: AdminModule). */
@Global()
@Module({
  providers: [RuleSetHolder, RouteTopics, RulesWatcher],
  exports: [RuleSetHolder, RouteTopics],
})
export class RulesModule {}
