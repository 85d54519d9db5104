import { ObservabilityModule, type Telemetry } from '@dmp/observability';
import { RedisModule } from '@dmp/redis';
import { Global, Module, type DynamicModule } from '@nestjs/common';
import { AdminModule } from './admin/admin.module';
import { KERNEL_CONFIG, type KernelConfig } from './config';
import { IngestModule } from './ingest/ingest.module';
import { RulesConsumerModule } from './rules-consumer/rules-consumer.module';
import { RulesModule } from './rules/rules.module';

/** Makes the validated configuration injectable everywhere (`@Inject(KERNEL_CONFIG)`). */
@Global()
@Module({})
class KernelConfigModule {
  static forRoot(config: KernelConfig): DynamicModule {
    return {
      module: KernelConfigModule,
      providers: [{ provide: KERNEL_CONFIG, useValue: config }],
      exports: [KERNEL_CONFIG],
    };
  }
}

/**
 * dmp-kernel has two roles in one process:
 *
 * - ingest (IngestModule): gRPC from dmp-mqtt → enrichment → normalization → publishing to the RocketMQ
 *   telemetry topics; answered once RocketMQ has stored the message;
 * - rules consumer (RulesConsumerModule): the kernel consumes its own telemetry topics (group
 *   KERNEL_RULES_GROUP) and runs the rules on what is durable → alarms, linkage commands, webhooks,
 *   routes. A message is evaluated only once stored, and again if a kernel dies mid-evaluation.
 *
 * The running rule set (RulesModule) serves both; the admin API (AdminModule) sits on top.
 */
@Module({})
export class AppModule {
  static forRoot(config: KernelConfig, telemetry: Telemetry): DynamicModule {
    const rulesConsumer = RulesConsumerModule.forRoot(config);
    return {
      module: AppModule,
      imports: [
        KernelConfigModule.forRoot(config),
        ObservabilityModule.forRoot({
          serviceName: 'dmp-kernel',
          logLevel: config.telemetry.logLevel,
          telemetry,
        }),
        RedisModule.forRoot(config.redis),
        RulesModule,
        IngestModule,
        rulesConsumer,
        AdminModule.forRoot(rulesConsumer),
      ],
    };
  }
}
