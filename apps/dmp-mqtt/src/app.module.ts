import { ObservabilityModule, type Telemetry } from '@dmp/observability';
import { RedisModule } from '@dmp/redis';
import { Module, type DynamicModule } from '@nestjs/common';
import { AuthModule } from './auth/auth.module';
import { MQTT_APP_CONFIG, type MqttAppConfig } from './config';
import { IngestModule } from './ingest/ingest.module';
import { DEVICE_MESSAGE } from './ingest/ingest.patterns';
import { TransportModule } from './transport/transport.module';

@Module({})
export class AppModule {
  static forRoot(config: MqttAppConfig, telemetry: Telemetry): DynamicModule {
    const { mqtt, ingest } = config;
    return {
      module: AppModule,
      global: true,
      imports: [
        ObservabilityModule.forRoot({
          serviceName: 'dmp-mqtt',
          logLevel: config.telemetry.logLevel,
          telemetry,
        }),
        TransportModule.forRoot({
          brokers: ingest.brokers,
          username: mqtt.username,
          password: mqtt.password,
          shareGroup: mqtt.shareGroup,
          subscriptions: mqtt.topics.map((filter) => ({ filter, pattern: DEVICE_MESSAGE })),
          receiveMaximum: mqtt.receiveMaximum,
          maxInFlightBytes: ingest.maxInFlightBytes,
          sessionExpirySeconds: ingest.sessionExpirySeconds,
          keepaliveSeconds: ingest.keepaliveSeconds,
          // Refused payloads up to this size are still received, counted and acknowledged.
          maximumPacketSize: Math.max(1024 * 1024, 4 * ingest.maxPayloadBytes),
          drainTimeoutMs: ingest.drainTimeoutMs,
          stopMode: ingest.stopMode,
        }),
        RedisModule.forRoot(config.redis),
        IngestModule,
        AuthModule,
      ],
      providers: [{ provide: MQTT_APP_CONFIG, useValue: config }],
      exports: [MQTT_APP_CONFIG],
    };
  }
}
