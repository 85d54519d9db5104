import type { RocketMqConsumerServer } from '@dmp/messaging';
import { startApplication, type Telemetry } from '@dmp/observability';
import { NestFactory } from '@nestjs/core';
import type { MicroserviceOptions } from '@nestjs/microservices';
import { ALARM_CONSUMER } from './alarms/alarms.module';
import { AppModule } from './app.module';
import { COMMAND_CONSUMER } from './commands/commands.module';
import { TELEMETRY_CONSUMER } from './consumer/consumer.module';
import { DEAD_LETTER_CONSUMER } from './dead-letters/dead-letters.module';
import type { DataConfig } from './config';

/**
 * Migrations run while the modules initialise (ClickHouseModule), i.e. before the RocketMQ
 * consumer is started by `startAllMicroservices`; HTTP (/health, /metrics) comes last.
 */
export async function bootstrap(config: DataConfig, telemetry: Telemetry): Promise<void> {
  const app = await NestFactory.create(AppModule.forRoot(config, telemetry), { bufferLogs: true });
  // One consumer per stream: telemetry, alarms, commands, dead letters.
  for (const server of [TELEMETRY_CONSUMER, ALARM_CONSUMER, COMMAND_CONSUMER, DEAD_LETTER_CONSUMER])
    app.connectMicroservice<MicroserviceOptions>(
      { strategy: app.get<RocketMqConsumerServer>(server) },
      { inheritAppConfig: true },
    );
  await startApplication(app, config.http);
}
