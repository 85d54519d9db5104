import { DEAD_LETTERS_TABLE } from '@dmp/contracts';
import type { Migration } from './migration';

const milliseconds = (column: string) =>
  `DateTime64(3, 'UTC') ALIAS fromUnixTimestamp64Milli(toInt64(${column}), 'UTC')`;

/**
 * Servers from 20.5 get the epoch-millisecond columns as `DateTime64(3, 'UTC')` too: ALIAS columns,
 * computed when read (nothing stored, no rewrite, not in `SELECT *`), so analysts can filter and
 * format millisecond times directly. The stored columns stay `UInt64` milliseconds and `DateTime`
 * seconds — what every query, the partition keys and 18.16 use. 18.16 (no DateTime64) waits for an
 * upgrade.
 */
export const millisecondTimes: Migration = {
  version: 9,
  name: 'millisecond_times',
  requires: 'dateTime64',
  statements: () => [
    `ALTER TABLE telemetry_raw
    ADD COLUMN IF NOT EXISTS ts64 ${milliseconds('ts_ms')},
    ADD COLUMN IF NOT EXISTS received_at64 ${milliseconds('received_at_ms')}`,
    `ALTER TABLE telemetry_latest ADD COLUMN IF NOT EXISTS ts64 ${milliseconds('ts_ms')}`,
    `ALTER TABLE ${DEAD_LETTERS_TABLE} ADD COLUMN IF NOT EXISTS received_at64 ${milliseconds('received_at_ms')}`,
  ],
};
