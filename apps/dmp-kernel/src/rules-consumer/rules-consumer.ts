import { ROCKETMQ_TRANSPORT, RocketMqExceptionFilter, type RocketMqMessage } from '@dmp/messaging';
import { Controller, UseFilters, type Type } from '@nestjs/common';
import { EventPattern, Payload } from '@nestjs/microservices';
import { RuleProcessor } from './rule-processor.service';

/**
 * The provider of the kernel's own consumer of its telemetry topics (group KERNEL_RULES_GROUP), a
 * RocketMqConsumerServer that bootstrap connects as a microservice of its own.
 */
export const RULES_CONSUMER = Symbol('RulesConsumer');

/**
 * Rule evaluation reads the durable telemetry stream rather than the ingest path: a message is evaluated
 * only once it is stored in RocketMQ, and a kernel that crashes mid-evaluation leaves it unacknowledged,
 * so it is evaluated again — no message escapes its rules, and ingest latency does not include them.
 * Topic names are configuration, so the controller is declared for them when the module is built.
 */
export function rulesConsumerController(topics: readonly string[]): Type<unknown> {
  @Controller()
  @UseFilters(RocketMqExceptionFilter)
  class RulesConsumerController {
    constructor(private readonly processor: RuleProcessor) {}

    @EventPattern([...topics], ROCKETMQ_TRANSPORT)
    onTelemetry(@Payload() message: RocketMqMessage): Promise<void> {
      return this.processor.handle(message);
    }
  }
  return RulesConsumerController;
}
