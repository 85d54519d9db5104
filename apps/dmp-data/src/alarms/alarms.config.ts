import { eventStreamSection, type EventStreamConfig } from '../storage/event-stream.config';

/** Settings of dmp-data's alarm store (`alarms`, `alarm_events`): `ALARM_CONSUMER_GROUP`, …; defaults when not loaded. */
export const alarmsSection = eventStreamSection('ALARM', { consumerGroup: 'dmp_data_alarm', pollers: 4 });

export type AlarmsConfig = EventStreamConfig;
