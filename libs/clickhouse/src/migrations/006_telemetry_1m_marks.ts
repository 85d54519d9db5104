import type { Migration } from './migration';

/**
 * Replaces `telemetry_1m_dirty` (003), whose done marks stayed forever while every aggregation pass
 * grouped the whole table. `telemetry_1m_marks` is an append-only log of the (device, minute)s the
 * writer touched, ordered by the server time of their insert (`marked_at`); the aggregator reads it
 * forward from the cursor in `telemetry_1m_progress` and drops the days behind it. The pending
 * marks of the old table are carried over (a migration run twice carries them twice: a minute is
 * then recomputed once more). `telemetry_1m_dirty` is no longer written; drop it once upgraded.
 */
export const telemetryMinuteMarks: Migration = {
  version: 6,
  name: 'telemetry_1m_marks',
  statements: () => [
    `CREATE TABLE IF NOT EXISTS telemetry_1m_marks
(
    marked_at  DateTime DEFAULT now(),
    device_id  String,
    minute     DateTime
)
ENGINE = MergeTree
PARTITION BY toYYYYMMDD(marked_at)
ORDER BY (marked_at, device_id, minute)`,
    `CREATE TABLE IF NOT EXISTS telemetry_1m_progress
(
    id           UInt8,
    marks_until  DateTime
)
ENGINE = ReplacingMergeTree(marks_until)
ORDER BY id`,
    `INSERT INTO telemetry_1m_marks (device_id, minute)
SELECT device_id, minute FROM telemetry_1m_dirty
GROUP BY device_id, minute
HAVING argMax(pending, ver) = 1`,
  ],
};
