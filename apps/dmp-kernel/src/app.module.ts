import { ObservabilityModule, type Telemetry } from '@dmp/observability';
import { Global, Module, type DynamicModule } from '@nestjs/common';
import { KERNEL_CONFIG, type KernelConfig } from './config';
import { IngestModule } from './ingest/ingest.module';

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

/** dmp-kernel: gRPC ingest from dmp-mqtt → normalization → RocketMQ. */
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
        IngestModule,
      ],
    };
  }
}
