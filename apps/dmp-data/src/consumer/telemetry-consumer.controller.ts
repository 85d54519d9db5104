import { RocketMqExceptionFilter, ROCKETMQ_TRANSPORT, type RocketMqMessage } from '@dmp/messaging';
import { Controller, UseFilters, type Type } from '@nestjs/common';
import { EventPattern, Payload } from '@nestjs/microservices';
import { TelemetryConsumer } from './telemetry-consumer.service';

/**
 * The RocketMQ handler of both telemetry topics. Topic names are configuration
 * (ROCKETMQ_TOPIC_EVENT / _SNAPSHOT) while `@EventPattern` needs them when the class is declared,
 * so the controller is declared for the configured topics when the module is built.
 */
export function telemetryConsumerController(topics: readonly string[]): Type<unknown> {
  @Controller()
  @UseFilters(RocketMqExceptionFilter)
  class TelemetryConsumerController {
    constructor(private readonly consumer: TelemetryConsumer) {}

    @EventPattern([...topics], ROCKETMQ_TRANSPORT)
    onTelemetry(@Payload() message: RocketMqMessage): Promise<void> {
      return this.consumer.handle(message);
    }
  }
  return TelemetryConsumerController;
}
