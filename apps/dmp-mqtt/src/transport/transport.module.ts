import { Module, type DynamicModule } from '@nestjs/common';
import { MQTT_INGEST_OPTIONS, MqttIngestServer, type MqttIngestOptions } from './mqtt-ingest.server';

/**
 * Provides the MQTT transport as a provider (not only a strategy object), so that it takes part in the
 * shutdown hooks: it drains in `beforeApplicationShutdown`, while the kernel client is still open.
 * bootstrap.ts connects it as the app's microservice.
 */
@Module({})
export class TransportModule {
  static forRoot(options: MqttIngestOptions): DynamicModule {
    return {
      module: TransportModule,
      providers: [{ provide: MQTT_INGEST_OPTIONS, useValue: options }, MqttIngestServer],
      exports: [MqttIngestServer],
    };
  }
}
