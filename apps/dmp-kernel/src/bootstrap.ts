import type { RocketMqConsumerServer } from '@dmp/messaging';
import { startApplication, type Telemetry } from '@dmp/observability';
import type { Server } from '@grpc/grpc-js';
import { Logger } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import type { MicroserviceOptions } from '@nestjs/microservices';
import { AppModule } from './app.module';
import type { KernelConfig } from './config';
import { raiseReceiveWindow } from './ingest/grpc-receive-window';
import { kernelGrpcOptions } from './ingest/grpc.options';
import { RULES_CONSUMER } from './rules-consumer/rules-consumer';

/**
 * Two microservices: the gRPC ingest (dmp-mqtt calls it) and, unless KERNEL_RULES_ENABLED=false, the
 * RocketMQ consumer evaluating rules. Both start after every module is ready (rule set loaded, Redis,
 * producer and MQTT connected); HTTP (/health, /metrics, /rules, /alarms) comes last.
 */
export async function bootstrap(config: KernelConfig, telemetry: Telemetry): Promise<void> {
  const app = await NestFactory.create(AppModule.forRoot(config, telemetry), { bufferLogs: true });
  let ingestServer: Server | undefined;
  app.connectMicroservice(
    kernelGrpcOptions(config, (server) => (ingestServer = server)),
    { inheritAppConfig: true },
  );
  if (config.rules.enabled)
    app.connectMicroservice<MicroserviceOptions>(
      { strategy: app.get<RocketMqConsumerServer>(RULES_CONSUMER) },
      { inheritAppConfig: true },
    );
  await startApplication(app, config.http, () => {
    const window = config.kernel.grpcMaxMessageBytes;
    if (!ingestServer || !raiseReceiveWindow(ingestServer, window))
      new Logger('Bootstrap').warn(
        `could not raise the Ingest server's HTTP/2 receive window to ${window} bytes (grpc-js internals ` +
          'changed): large batches cross in 64 KiB steps',
      );
  });
}
