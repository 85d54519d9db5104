import { DEAD_LETTERS_TABLE } from '@dmp/contracts';
import type { Migration } from './migration';

/**
 * `dead_letters`: every dead letter (RocketMQ `dmp_dead_letter`), written by dmp-data's dead-letters
 * feature. One row per dead letter: messages dmp-mqtt refused (reason code, raw payload) and messages a RocketMQ
 * consumer could not process. ReplacingMergeTree keyed by the RocketMQ message id of the dead letter,
 * prefixed by the reason code and the device (both derived from the message itself, so a redelivered
 * dead letter has the same key and collapses into one row; read with FINAL for exact counts) — the
 * prefix serves the usual questions, "which devices send X" and "what did device D send". Monthly
 * partitions by the time the source received the message.
 *
 * `payload` is the raw payload in base64 (any bytes); `payload_text` the same as text when it is valid
 * UTF-8, '' otherwise. Times as DateTime plus epoch milliseconds (18.16 has no DateTime64).
 */
export const deadLetters: Migration = {
  version: 4,
  name: 'dead_letters',
  statements: () => [
    `CREATE TABLE IF NOT EXISTS ${DEAD_LETTERS_TABLE}
(
    message_id          String,
    received_at         DateTime,
    received_at_ms      UInt64,
    dead_lettered_at_ms UInt64,
    source              String,
    source_instance     String,
    source_topic        String,
    source_message_id   String,
    device_id           String,
    error_code          String,
    error_message       String,
    content_type        String,
    payload             String,
    payload_text        String,
    payload_size        UInt32,
    properties          String,
    trace_id            String,
    inserted_at         DateTime DEFAULT now()
)
ENGINE = ReplacingMergeTree()
PARTITION BY toYYYYMM(received_at)
ORDER BY (error_code, device_id, message_id)`,
  ],
};
