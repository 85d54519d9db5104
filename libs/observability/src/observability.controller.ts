import { errorMessage } from '@dmp/contracts';
import { Controller, Get, Header } from '@nestjs/common';
import { HealthCheck, HealthCheckService, HealthIndicatorService } from '@nestjs/terminus';
import { HealthRegistry } from './health.registry';
import { MetricsRegistry } from './metrics.registry';

@Controller()
export class ObservabilityController {
  constructor(
    private readonly metrics: MetricsRegistry,
    private readonly healthRegistry: HealthRegistry,
    private readonly health: HealthCheckService,
    private readonly indicator: HealthIndicatorService,
  ) {}

  @Get('metrics')
  @Header('Content-Type', 'text/plain; version=0.0.4; charset=utf-8')
  scrape(): Promise<string> {
    return this.metrics.registry.metrics();
  }

  /** 200 when every registered dependency is up, 503 with the failing ones otherwise. */
  @Get('health')
  @HealthCheck()
  check() {
    return this.health.check(
      [...this.healthRegistry.checks].map(([name, check]) => async () => {
        const session = this.indicator.check(name);
        try {
          const result = await check();
          return result.up ? session.up(result.detail ?? {}) : session.down(result.detail ?? {});
        } catch (error) {
          return session.down({ message: errorMessage(error) });
        }
      }),
    );
  }
}
