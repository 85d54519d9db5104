import { RocketMqConsumerServer } from '@dmp/messaging';
import { startApplication, type Telemetry } from '@dmp/observability';
import { NestFactory } from '@nestjs/core';
import type { MicroserviceOptions } from '@nestjs/microservices';
import { AlarmConsumerServer } from './alarms/alarms.module';
import { AppModule } from './app.module';
import { DeadLetterConsumerServer } from './dead-letters/dead-letters.module';
import type { DataConfig } from './config';

/**
 * Migrations run while the modules initialise (ClickHouseModule), i.e. before the RocketMQ
 * consumer is started by `startAllMicroservices`; HTTP (/health, /metrics) comes last.
 */
export async function bootstrap(config: DataConfig, telemetry: Telemetry): Promise<void> {
  const app = await NestFactory.create(AppModule.forRoot(config, telemetry), { bufferLogs: true });
  // One consumer per stream: telemetry, alarms, dead letters.
  for (const server of [RocketMqConsumerServer, AlarmConsumerServer, DeadLetterConsumerServer])
    app.connectMicroservice<MicroserviceOptions>({ strategy: app.get(server) }, { inheritAppConfig: true });
  await startApplication(app, config.http);
}
