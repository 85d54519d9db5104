import { RocketMqProducer } from '@dmp/messaging';
import { Module } from '@nestjs/common';
import { RocketMqProducerLifecycle, rocketMqProducerProvider } from './rocketmq-producer.provider';
import { TelemetryPublisher } from './telemetry.publisher';

@Module({
  providers: [rocketMqProducerProvider, RocketMqProducerLifecycle, TelemetryPublisher],
  exports: [TelemetryPublisher, RocketMqProducer],
})
export class PublishingModule {}
