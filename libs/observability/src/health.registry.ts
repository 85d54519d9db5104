import { Injectable } from '@nestjs/common';

export interface HealthCheckResult {
  up: boolean;
  detail?: Record<string, unknown>;
}
export type HealthCheckFn = () => HealthCheckResult | Promise<HealthCheckResult>;

/** Features register a check for each dependency they hold (broker, RocketMQ, ClickHouse…). */
@Injectable()
export class HealthRegistry {
  readonly checks = new Map<string, HealthCheckFn>();

  register(name: string, check: HealthCheckFn): void {
    this.checks.set(name, check);
  }
}
