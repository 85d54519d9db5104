import { startApplication, type Telemetry } from '@dmp/observability';
import { NestFactory } from '@nestjs/core';
import { AppModule } from './app.module';
import type { MqttAppConfig } from './config';
import { MqttIngestServer } from './transport/mqtt-ingest.server';

export async function bootstrap(config: MqttAppConfig, telemetry: Telemetry): Promise<void> {
  const app = await NestFactory.create(AppModule.forRoot(config, telemetry), { bufferLogs: true });
  // The transport is a provider (it drains in the shutdown hooks); listen() runs after app.init().
  app.connectMicroservice({ strategy: app.get(MqttIngestServer) }, { inheritAppConfig: true });
  await startApplication(app, config.http);
}
