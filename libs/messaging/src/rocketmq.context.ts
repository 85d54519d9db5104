import { BaseRpcContext } from '@nestjs/microservices';
import type { MessageView } from 'rocketmq-client-nodejs';

/** Identifies the RocketMQ transport, e.g. `@EventPattern('dmp_telemetry_event', ROCKETMQ_TRANSPORT)`. */
export const ROCKETMQ_TRANSPORT = Symbol('ROCKETMQ');

/** What a handler receives for each RocketMQ message (`@EventPattern(topic)`). */
export interface RocketMqMessage {
  topic: string;
  messageId: string;
  body: Buffer;
  tag?: string;
  keys: string[];
  messageGroup?: string;
  properties: Record<string, string>;
  /** 1 on first delivery, then counts redeliveries. */
  deliveryAttempt: number;
  /** When the producer sent it. */
  bornTimestamp?: Date;
}

export function toRocketMqMessage(
  view: MessageView,
  deliveryAttempt = view.deliveryAttempt || 1,
): RocketMqMessage {
  return {
    topic: view.topic,
    messageId: view.messageId,
    body: view.body,
    ...(view.tag ? { tag: view.tag } : {}),
    keys: view.keys,
    ...(view.messageGroup ? { messageGroup: view.messageGroup } : {}),
    properties: Object.fromEntries(view.properties),
    deliveryAttempt,
    ...(view.bornTimestamp ? { bornTimestamp: view.bornTimestamp } : {}),
  };
}

type RocketMqContextArgs = [message: RocketMqMessage, consumerGroup: string];

/** The second argument of a RocketMQ handler (`@Ctx() ctx: RocketMqContext`). */
export class RocketMqContext extends BaseRpcContext<RocketMqContextArgs> {
  getMessage(): RocketMqMessage {
    return this.args[0];
  }
  getTopic(): string {
    return this.args[0].topic;
  }
  getConsumerGroup(): string {
    return this.args[1];
  }
  getDeliveryAttempt(): number {
    return this.args[0].deliveryAttempt;
  }
}
