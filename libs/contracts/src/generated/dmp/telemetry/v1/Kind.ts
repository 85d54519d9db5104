// Original file: libs/contracts/src/proto/telemetry.proto

export const Kind = {
  KIND_UNSPECIFIED: 'KIND_UNSPECIFIED',
  /**
   * change event: a value changed
   */
  KIND_TELEMETRY: 'KIND_TELEMETRY',
  /**
   * device event
   */
  KIND_EVENT: 'KIND_EVENT',
  /**
   * full state, every 5 minutes
   */
  KIND_SNAPSHOT: 'KIND_SNAPSHOT',
} as const;

export type Kind =
  | 'KIND_UNSPECIFIED'
  | 0
  /**
   * change event: a value changed
   */
  | 'KIND_TELEMETRY'
  | 1
  /**
   * device event
   */
  | 'KIND_EVENT'
  | 2
  /**
   * full state, every 5 minutes
   */
  | 'KIND_SNAPSHOT'
  | 3

export type Kind__Output = typeof Kind[keyof typeof Kind]
