import { Global, Inject, Module, type DynamicModule, type OnApplicationShutdown } from '@nestjs/common';
import { TerminusModule } from '@nestjs/terminus';
import { trace } from '@opentelemetry/api';
import { LoggerModule } from 'nestjs-pino';
import { HealthRegistry } from './health.registry';
import { MetricsRegistry } from './metrics.registry';
import { ObservabilityController } from './observability.controller';
import type { Telemetry } from './telemetry';

export interface ObservabilityOptions {
  serviceName: string;
  logLevel: string;
  telemetry: Telemetry;
}

const TELEMETRY = Symbol('TELEMETRY');

/** Logging, `/metrics`, `/health`, and flushing spans last on shutdown. Imported once by each app. */
@Global()
@Module({})
export class ObservabilityModule implements OnApplicationShutdown {
  static forRoot(options: ObservabilityOptions): DynamicModule {
    return {
      module: ObservabilityModule,
      imports: [
        TerminusModule.forRoot({ logger: false }),
        LoggerModule.forRoot({
          pinoHttp: {
            name: options.serviceName,
            level: options.logLevel,
            autoLogging: false,
            mixin: () => {
              const span = trace.getActiveSpan()?.spanContext();
              return span ? { trace_id: span.traceId, span_id: span.spanId } : {};
            },
          },
        }),
      ],
      controllers: [ObservabilityController],
      providers: [
        { provide: MetricsRegistry, useValue: new MetricsRegistry(options.serviceName) },
        HealthRegistry,
        { provide: TELEMETRY, useValue: options.telemetry },
      ],
      exports: [MetricsRegistry, HealthRegistry],
    };
  }

  constructor(@Inject(TELEMETRY) private readonly telemetry: Telemetry) {}

  /** Runs after every feature drained in its own shutdown hooks, so their last spans are exported. */
  async onApplicationShutdown(): Promise<void> {
    await this.telemetry.shutdown();
  }
}
