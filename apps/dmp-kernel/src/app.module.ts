import { ObservabilityModule, type Telemetry } from '@dmp/observability';
import { RedisModule } from '@dmp/redis';
import { Global, Module, type DynamicModule } from '@nestjs/common';
import { KERNEL_CONFIG, type KernelConfig } from './config';
import { EvaluationModule } from './evaluation/evaluation.module';
import { IngestModule } from './ingest/ingest.module';
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
 * dmp-kernel: gRPC ingest from dmp-mqtt → enrichment → normalization → RocketMQ; rule evaluation from
 * the telemetry topics → alarms, linkage commands, webhooks, routes.
 */
@Module({})
export class AppModule {
  static forRoot(config: KernelConfig, telemetry: Telemetry): DynamicModule {
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
        EvaluationModule.forRoot(config),
      ],
    };
  }
}
