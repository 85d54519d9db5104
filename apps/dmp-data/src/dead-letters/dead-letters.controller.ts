import { RocketMqExceptionFilter, ROCKETMQ_TRANSPORT, type RocketMqMessage } from '@dmp/messaging';
import { Controller, UseFilters, type Type } from '@nestjs/common';
import { EventPattern, Payload } from '@nestjs/microservices';
import { DeadLettersService } from './dead-letters.service';

/**
 * The handler of the dead-letter topic. Its name is configuration (ROCKETMQ_TOPIC_DEAD_LETTER) while
 * `@EventPattern` needs it when the class is declared, so the controller is declared per topic.
 */
export function deadLettersController(topic: string): Type<unknown> {
  @Controller()
  @UseFilters(RocketMqExceptionFilter)
  class DeadLettersController {
    constructor(private readonly deadLetters: DeadLettersService) {}

    @EventPattern<string>(topic, ROCKETMQ_TRANSPORT)
    onDeadLetter(@Payload() message: RocketMqMessage): Promise<void> {
      return this.deadLetters.handle(message);
    }
  }
  return DeadLettersController;
}
