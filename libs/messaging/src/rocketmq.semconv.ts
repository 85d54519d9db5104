/**
 * OpenTelemetry messaging attributes used by the RocketMQ spans (semantic conventions,
 * messaging + RocketMQ sections; still "development" status upstream, hence literals).
 */
export const ATTR = {
  system: 'messaging.system',
  destination: 'messaging.destination.name',
  operationType: 'messaging.operation.type',
  operationName: 'messaging.operation.name',
  messageId: 'messaging.message.id',
  bodySize: 'messaging.message.body.size',
  consumerGroup: 'messaging.consumer.group.name',
  namespace: 'messaging.rocketmq.namespace',
  messageGroup: 'messaging.rocketmq.message.group',
  messageTag: 'messaging.rocketmq.message.tag',
  messageKeys: 'messaging.rocketmq.message.keys',
  messageType: 'messaging.rocketmq.message.type',
  deliveryAttempt: 'messaging.rocketmq.message.delivery_attempt',
  serverAddress: 'server.address',
  serverPort: 'server.port',
  /** DMP's own: how the consumer settled the message (ack | retry | dead_letter | skipped). */
  outcome: 'dmp.messaging.outcome',
} as const;

export const ROCKETMQ_SYSTEM = 'rocketmq';
export const TRACER_NAME = '@dmp/messaging';

/** `host:port` of the first endpoint, for `server.address` / `server.port`. */
export function serverAttributes(endpoints: string): Record<string, string | number> {
  const first = endpoints.split(';')[0]?.trim() ?? '';
  const colon = first.lastIndexOf(':');
  if (colon <= 0) return { [ATTR.serverAddress]: first };
  const port = Number(first.slice(colon + 1));
  return Number.isInteger(port)
    ? { [ATTR.serverAddress]: first.slice(0, colon), [ATTR.serverPort]: port }
    : { [ATTR.serverAddress]: first };
}

/** The attributes every `process {topic}` span has: what was processed, from where, by which group. */
export function processAttributes(
  message: { topic: string; messageId: string; messageGroup?: string },
  consumerGroup: string,
): Record<string, string> {
  return {
    [ATTR.system]: ROCKETMQ_SYSTEM,
    [ATTR.destination]: message.topic,
    [ATTR.consumerGroup]: consumerGroup,
    [ATTR.operationType]: 'process',
    [ATTR.operationName]: 'process',
    [ATTR.messageId]: message.messageId,
    ...(message.messageGroup ? { [ATTR.messageGroup]: message.messageGroup } : {}),
  };
}
