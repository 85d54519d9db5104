export * from './rocketmq.producer';
export * from './rocketmq.consumer-server';
export * from './rocketmq.context';
export * from './rocketmq.exception-filter';
export { MessagingErrorCode } from './rocketmq.errors';
export { rocketMqClientLogger } from './rocketmq.logger';
export { MultiTopicSimpleConsumer, StartupSafeProducer } from './rocketmq.clients';
export { ATTR as MessagingAttribute, ROCKETMQ_SYSTEM } from './rocketmq.semconv';
export * from './telemetry-entries';
