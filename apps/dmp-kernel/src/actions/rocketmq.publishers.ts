import type { AlarmEvent, NormalizedTelemetry } from '@dmp/contracts';
import { RocketMqProducer } from '@dmp/messaging';
import { Inject, Injectable } from '@nestjs/common';
import { KERNEL_CONFIG, type KernelConfig } from '../config';
import { RouteTopics } from './route-topics';

/**
 * Alarm events to RocketMQ `dmp_alarm` (FIFO, message group = device id, key = alarm id, tag = transition)
 * for dmp-data; the body is the AlarmEvent JSON (libs/contracts alarms.ts).
 */
@Injectable()
export class AlarmEventPublisher {
  constructor(
    private readonly producer: RocketMqProducer,
    @Inject(KERNEL_CONFIG) private readonly config: KernelConfig,
  ) {}

  async publish(event: AlarmEvent): Promise<void> {
    await this.producer.send({
      topic: this.config.rocketmq.topics.alarm,
      body: Buffer.from(JSON.stringify(event)),
      messageGroup: event.deviceId,
      keys: [event.alarmId, event.eventId],
      tag: event.transition,
      properties: { dmp_device_id: event.deviceId, dmp_rule_id: event.ruleId, dmp_alarm_id: event.alarmId },
    });
  }
}

/**
 * Dead letters of outbox entries the kernel gave up on (commands, webhooks, alarm events), to the
 * project's dead-letter topic (ROCKETMQ_TOPIC_DEAD_LETTER) like every other dead letter.
 */
@Injectable()
export class OutboxDeadLetterPublisher {
  constructor(
    private readonly producer: RocketMqProducer,
    @Inject(KERNEL_CONFIG) private readonly config: KernelConfig,
  ) {}

  async publish(letter: {
    body: Buffer;
    keys: string[];
    tag: string;
    properties: Record<string, string>;
  }): Promise<void> {
    await this.producer.send({ topic: this.config.rocketmq.topics.deadLetter, ...letter });
  }
}

/**
 * `route` actions: the normalized message, as it is on the telemetry topics, also to another topic — FIFO
 * topics keep the device as message group (per-device order), NORMAL topics get it without.
 */
@Injectable()
export class RoutePublisher {
  constructor(
    private readonly producer: RocketMqProducer,
    private readonly topics: RouteTopics,
  ) {}

  async route(
    topic: string,
    telemetry: NormalizedTelemetry,
    ruleId: string,
    rulesetVersion: string,
  ): Promise<void> {
    const fifo = await this.topics.isFifo(topic);
    await this.producer.send({
      topic,
      body: Buffer.from(JSON.stringify(telemetry)),
      ...(fifo ? { messageGroup: telemetry.deviceId } : {}),
      keys: [telemetry.messageId],
      tag: telemetry.kind,
      properties: {
        dmp_device_id: telemetry.deviceId,
        dmp_rule_id: ruleId,
        dmp_ruleset_version: rulesetVersion,
      },
    });
  }
}
