import { Module } from '@nestjs/common';
import { MQTT_APP_CONFIG, type MqttAppConfig } from '../config';
import { KernelForwarder } from './kernel-forwarder.service';
import { KernelIngestClient } from './kernel-ingest.client';

/** The gRPC client of dmp-kernel and the batching forwarder in front of it. */
@Module({
  providers: [
    {
      provide: KernelIngestClient,
      inject: [MQTT_APP_CONFIG],
      useFactory: (config: MqttAppConfig) =>
        new KernelIngestClient(config.kernelGrpc.url, config.ingest.kernel.callTimeoutMs),
    },
    KernelForwarder,
  ],
  exports: [KernelForwarder],
})
export class KernelClientModule {}
