import type { NormalizedTelemetry } from '@dmp/contracts';
import { RocketMqProducer, type SendResult } from '@dmp/messaging';
import { Inject, Injectable } from '@nestjs/common';
import { KERNEL_CONFIG, type KernelConfig } from '../config';

/**
 * Publishes normalized telemetry: snapshots to the snapshot topic, change events and device
 * events to the event topic; FIFO per device (message group = device id), JSON body.
 */
@Injectable()
export class TelemetryPublisher {
  constructor(
    private readonly producer: RocketMqProducer,
    @Inject(KERNEL_CONFIG) private readonly config: KernelConfig,
  ) {}

  topicOf(kind: NormalizedTelemetry['kind']): string {
    return kind === 'snapshot' ? this.config.rocketmq.topics.snapshot : this.config.rocketmq.topics.event;
  }

  /** Resolves once RocketMQ stored the message; throws DmpError (see RocketMqProducer.send). */
  publish(telemetry: NormalizedTelemetry): Promise<SendResult> {
    return this.producer.send({
      topic: this.topicOf(telemetry.kind),
      body: Buffer.from(JSON.stringify(telemetry)),
      messageGroup: telemetry.deviceId,
      keys: [telemetry.messageId],
      tag: telemetry.kind,
      properties: { dmp_device_id: telemetry.deviceId },
    });
  }
}
