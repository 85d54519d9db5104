import { startApplication, type Telemetry } from '@dmp/observability';
import { NestFactory } from '@nestjs/core';
import { AppModule } from './app.module';
import type { KernelConfig } from './config';
import { kernelGrpcOptions } from './ingest/grpc.options';

export async function bootstrap(config: KernelConfig, telemetry: Telemetry): Promise<void> {
  const app = await NestFactory.create(AppModule.forRoot(config, telemetry), { bufferLogs: true });
  app.connectMicroservice(kernelGrpcOptions(config), { inheritAppConfig: true });
  await startApplication(app, config.http);
}
