import { RocketMqConsumerServer } from '@dmp/messaging';
import { startApplication, type Telemetry } from '@dmp/observability';
import { NestFactory } from '@nestjs/core';
import type { MicroserviceOptions } from '@nestjs/microservices';
import { AppModule } from './app.module';
import type { DataConfig } from './config';

/**
 * Migrations run while the modules initialise (ClickHouseModule), i.e. before the RocketMQ
 * consumer is started by `startAllMicroservices`; HTTP (/health, /metrics) comes last.
 */
export async function bootstrap(config: DataConfig, telemetry: Telemetry): Promise<void> {
  const app = await NestFactory.create(AppModule.forRoot(config, telemetry), { bufferLogs: true });
  app.connectMicroservice<MicroserviceOptions>(
    { strategy: app.get(RocketMqConsumerServer) },
    { inheritAppConfig: true },
  );
  await startApplication(app, config.http);
}
