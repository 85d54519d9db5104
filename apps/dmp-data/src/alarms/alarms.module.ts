import { AlarmErrorCode, alarmEventSchema } from '@dmp/contracts';
import { Module, type DynamicModule } from '@nestjs/common';
import { eventStreamModule } from '../storage/event-stream';
import { AlarmWriter } from './alarm.writer';
import { alarmsSection, type AlarmsConfig } from './alarms.config';

/** The token of the RocketMQ consumer of the alarm topic, connected by bootstrap as its own microservice. */
export const ALARM_CONSUMER = Symbol('AlarmConsumer');

export interface AlarmsModuleOptions {
  rocketmq: { endpoints: string; namespace: string; topics: { alarm: string; deadLetter: string } };
  /** From `alarmsSection`; defaults when absent. */
  alarms?: AlarmsConfig;
}

/**
 * dmp-data's alarm store: every AlarmEvent from `dmp_alarm` (group ALARM_CONSUMER_GROUP, orderly) into
 * ClickHouse `alarm_explanations`, `alarm_events` (every transition) and `alarms` (latest state per alarm).
 */
@Module({})
export class AlarmsModule {
  static forRoot({ rocketmq, alarms }: AlarmsModuleOptions): DynamicModule {
    return eventStreamModule(
      AlarmsModule,
      {
        kind: 'alarm',
        contract: 'AlarmEvent',
        schema: alarmEventSchema,
        invalid: AlarmErrorCode.InvalidAlarmEvent,
        writer: AlarmWriter,
      },
      {
        rocketmq: { ...rocketmq, deadLetterTopic: rocketmq.topics.deadLetter },
        topic: rocketmq.topics.alarm,
        config: alarms ?? alarmsSection.parse({}),
        consumer: ALARM_CONSUMER,
      },
    );
  }
}
