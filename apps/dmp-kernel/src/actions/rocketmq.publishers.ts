import type { AlarmEvent, CommandEvent, NormalizedTelemetry } from '@dmp/contracts';
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
 * Command ledger events to RocketMQ `dmp_command` (FIFO, message group = device id, key = command id,
 * tag = transition) for dmp-data; the body is the CommandEvent JSON (libs/contracts commands.ts).
 */
@Injectable()
export class CommandEventPublisher {
  constructor(
    private readonly producer: RocketMqProducer,
    @Inject(KERNEL_CONFIG) private readonly config: KernelConfig,
  ) {}

  async publish(event: CommandEvent): Promise<void> {
    const { command } = event;
    await this.producer.send({
      topic: this.config.rocketmq.topics.command,
      body: Buffer.from(JSON.stringify(event)),
      messageGroup: command.deviceId,
      keys: [command.commandId, event.eventId],
      tag: event.transition,
      properties: {
        dmp_device_id: command.deviceId,
        dmp_rule_id: command.ruleId,
        dmp_command_id: command.commandId,
      },
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
