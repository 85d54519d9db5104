import { Controller } from '@nestjs/common';
import { Ctx, MessagePattern, Payload } from '@nestjs/microservices';
import type { MqttContext } from '../transport/mqtt.context';
import type { MqttMessage, MqttSettlement } from '../transport/mqtt-message';
import { DEVICE_MESSAGE } from './ingest.patterns';
import { IngestService } from './ingest.service';

/** Entry point of device messages; its answer decides the PUBACK. */
@Controller()
export class IngestController {
  constructor(private readonly ingest: IngestService) {}

  @MessagePattern(DEVICE_MESSAGE)
  handle(@Payload() message: MqttMessage, @Ctx() ctx: MqttContext): Promise<MqttSettlement> {
    return this.ingest.handle(message, ctx);
  }
}
