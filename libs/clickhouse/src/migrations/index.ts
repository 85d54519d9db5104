import { telemetryRaw } from './001_telemetry_raw';
import { telemetryLatest } from './002_telemetry_latest';
import { telemetryMinute } from './003_telemetry_1m';
import { deadLetters } from './004_dead_letters';
import { alarms } from './005_alarms';
import { telemetryMinuteMarks } from './006_telemetry_1m_marks';
import { telemetryMinuteSource } from './007_telemetry_1m_source';
import { lowCardinality } from './008_low_cardinality';
import { millisecondTimes } from './009_millisecond_times';
import { alarmExplanations } from './010_alarm_explanations';
import { commands } from './011_commands';
import { telemetryCorrections } from './012_telemetry_corrections';
import { alarmGenerations } from './013_alarm_generations';
import type { Migration } from './migration';

export * from './migration';
export * from './migrate';

/** DMP's schema, in order. Append; never edit an applied migration. */
export const migrations: readonly Migration[] = [
  telemetryRaw,
  telemetryLatest,
  telemetryMinute,
  deadLetters,
  alarms,
  telemetryMinuteMarks,
  telemetryMinuteSource,
  lowCardinality,
  millisecondTimes,
  alarmExplanations,
  commands,
  telemetryCorrections,
  alarmGenerations,
];
