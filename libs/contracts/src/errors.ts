/**
 * The registry of DMP's stable codes, in one place (as fastify keeps `FST_ERR_*` in `lib/errors.js`):
 * every `DMP_ERR_*` (and `DMP_FILTERED_*`) string any app or library raises, labels a metric with, or
 * writes into a dead letter is a key of {@link ERROR_CODES}, with who raises it, how it reaches a user
 * (HTTP status, gRPC status, MQTT PUBACK reason, dead letter, metric label) and what it means. The code
 * groups below (`RejectCode`, `KernelErrorCode`, …) are named views of it for the code that raises them;
 * a value outside the registry does not compile. The values are stable: users, alerts, dashboards and
 * `dead_letters` queries select on them. docs/operations.md ("Error codes") lists every one (a unit
 * test holds docs, registry and sources to each other).
 */

/** Who raises a code. */
export type ErrorCodeOwner =
  'dmp-mqtt' | 'dmp-kernel' | 'dmp-data' | '@dmp/messaging' | '@dmp/config' | '@dmp/clickhouse' | 'dmp CLI';

export interface ErrorCodeInfo {
  readonly owners: readonly ErrorCodeOwner[];
  /** The status an admin API answers with when this code's error reaches it. */
  readonly http?: number;
  /** The gRPC status of a call refused as a whole with this code (its details start with `CODE:`). */
  readonly grpc?: 'RESOURCE_EXHAUSTED';
  /** Where a user meets it. */
  readonly seen: string;
  /** What it means, in a line. */
  readonly meaning: string;
}

const mqtt = ['dmp-mqtt'] as const;
const kernel = ['dmp-kernel'] as const;
const data = ['dmp-data'] as const;
const messaging = ['@dmp/messaging'] as const;

export const ERROR_CODES = {
  // ── device messages, checked by dmp-mqtt (docs/devices.md "Checks, in order, and reason codes") ──
  DMP_ERR_WRONG_TOPIC: {
    owners: mqtt,
    seen: 'PUBACK 0x90; dead letter',
    meaning: 'the topic is not `devices/{valid id}/{telemetry,event,snapshot,heartbeat}`',
  },
  DMP_FILTERED_HEARTBEAT: {
    owners: mqtt,
    seen: 'PUBACK 0x00; `dmp_mqtt_filtered_total` reason',
    meaning: 'a heartbeat: counted, acknowledged, neither forwarded nor dead-lettered',
  },
  DMP_ERR_UNKNOWN_DEVICE: {
    owners: mqtt,
    seen: 'PUBACK 0x87; dead letter',
    meaning: "the topic's device is not registered, or disabled",
  },
  DMP_ERR_PAYLOAD_TOO_LARGE: {
    owners: mqtt,
    seen: 'PUBACK 0x83; dead letter',
    meaning: 'the payload is larger than `MQTT_MAX_PAYLOAD_BYTES`',
  },
  DMP_ERR_MALFORMED_PAYLOAD: {
    owners: mqtt,
    seen: 'PUBACK 0x99; dead letter',
    meaning: 'an unsupported content type, or neither valid UTF-8 JSON nor a decodable `DevicePayload`',
  },
  DMP_ERR_INVALID_PAYLOAD: {
    owners: ['dmp-mqtt', 'dmp-kernel'],
    seen: 'PUBACK 0x99; Ingest outcome; dead letter',
    meaning: 'the payload breaks the schema (types, required fields, limits, unknown fields)',
  },
  DMP_ERR_SPOOFED_DEVICE: {
    owners: mqtt,
    seen: 'PUBACK 0x87; dead letter',
    meaning: "the payload's `deviceId` is not the topic's",
  },
  DMP_ERR_DUPLICATE: {
    owners: mqtt,
    seen: 'PUBACK 0x00; dead letter',
    meaning: 'the same message id (or content) within the duplicate window: not forwarded again',
  },
  DMP_ERR_RATE_LIMITED: {
    owners: mqtt,
    seen: 'PUBACK 0x97; dead letter',
    meaning: "over the device's token bucket (first deliveries only)",
  },
  DMP_ERR_REJECTED: {
    owners: mqtt,
    seen: 'dead letter',
    meaning: 'dmp-kernel refused the message without a code of its own',
  },
  DMP_ERR_HANDOFF_ABANDONED: {
    owners: mqtt,
    seen: "dmp-mqtt's log; the message is not acknowledged, the broker redelivers it",
    meaning: 'the hand-off to dmp-kernel was given up (deadline, shutdown, an earlier message abandoned)',
  },
  // ── devices: registry, authentication, admin API (docs/devices.md) ──
  DMP_ERR_REGISTRY_UNAVAILABLE: {
    owners: mqtt,
    seen: 'login denied or message retried later',
    meaning: 'Redis did not answer and nothing usable is cached',
  },
  DMP_ERR_AUTH_OVERLOADED: {
    owners: mqtt,
    seen: 'login denied (reason `overloaded`); the device retries',
    meaning: 'too many password checks running and queued',
  },
  DMP_ERR_RESERVED_DEVICE_ID: {
    owners: mqtt,
    http: 409,
    seen: 'admin API 409',
    meaning: "a device id that is, or could be, a service account's name or client id",
  },
  // ── dmp-kernel's Ingest (gRPC) ──
  DMP_ERR_LANE_FULL: {
    owners: kernel,
    grpc: 'RESOURCE_EXHAUSTED',
    seen: 'gRPC `RESOURCE_EXHAUSTED`; dmp-mqtt retries the call',
    meaning: 'the call was refused as a whole: a lane it would add to is full',
  },
  DMP_ERR_SHED_SNAPSHOT: {
    owners: kernel,
    seen: 'Ingest outcome (retryable)',
    meaning: 'too many snapshot sends in flight: snapshots lag or are shed, events never are',
  },
  DMP_ERR_PRECEDING_FAILED: {
    owners: kernel,
    seen: 'Ingest outcome (retryable)',
    meaning: 'not sent: an earlier message of the same device and topic failed (order)',
  },
  DMP_ERR_CALL_CANCELLED: {
    owners: kernel,
    seen: 'Ingest outcome (retryable)',
    meaning: 'not sent: the call was cancelled or its deadline passed first',
  },
  DMP_ERR_INTERNAL: {
    owners: kernel,
    seen: 'Ingest outcome',
    meaning: "an unexpected failure; dmp-kernel's log has the details",
  },
  DMP_ERR_METADATA_UNAVAILABLE: {
    owners: kernel,
    seen: 'the message is retried later',
    meaning: "Redis did not answer and the device's metadata is not cached",
  },
  // ── rules and alarms (docs/rules.md) ──
  DMP_ERR_RULE_BUDGET: {
    owners: kernel,
    seen: '`dmp_kernel_rule_errors_total` code; `dmp rules dry-run`',
    meaning: 'a rule expression ran out of its step budget and was stopped',
  },
  DMP_ERR_RULE_EVALUATION: {
    owners: kernel,
    seen: '`dmp_kernel_rule_errors_total` code; `dmp rules dry-run`',
    meaning: 'any other evaluation error (wrong types, an invalid dynamic regular expression, …)',
  },
  DMP_ERR_RULESET_INVALID: {
    owners: kernel,
    http: 422,
    seen: "admin API 422; dmp-kernel's log",
    meaning: 'a rule set was refused (file:line:column errors); the running one stays',
  },
  DMP_ERR_ALARM_NOT_FOUND: {
    owners: kernel,
    http: 404,
    seen: 'admin API 404',
    meaning: 'no such open alarm (unknown, or already cleared or cancelled)',
  },
  DMP_ERR_ALARM_NOT_ACKNOWLEDGEABLE: {
    owners: kernel,
    http: 409,
    seen: 'admin API 409',
    meaning: 'the alarm is still pending, or already acknowledged',
  },
  DMP_ERR_ALARM_CONFLICT: {
    owners: kernel,
    http: 409,
    seen: 'admin API 409; the message is retried later',
    meaning: 'the alarm changed under every attempt (another replica at the same time)',
  },
  DMP_ERR_COMMAND_UNAVAILABLE: {
    owners: kernel,
    seen: 'outbox retry; dead letter (`dmp-kernel-outbox`)',
    meaning: 'the broker did not acknowledge a command in time, or is unreachable',
  },
  DMP_ERR_COMMAND_NOT_FOUND: {
    owners: kernel,
    http: 404,
    seen: 'admin API 404; `dmp commands show`',
    meaning: 'no such command in the ledger (unknown, or older than KERNEL_COMMAND_RETENTION_MS)',
  },
  DMP_ERR_COMMAND_NOT_RESENDABLE: {
    owners: kernel,
    http: 409,
    seen: 'admin API 409; `dmp commands resend`',
    meaning:
      'the command was answered `ok`, is still under way, or was resent KERNEL_COMMAND_MAX_RESENDS times',
  },
  DMP_ERR_COMMAND_CONFLICT: {
    owners: kernel,
    http: 409,
    seen: "admin API 409; dmp-kernel's log",
    meaning: 'the command changed under every attempt (a reply or another replica at the same time)',
  },
  DMP_ERR_INVALID_COMMAND_REPLY: {
    owners: kernel,
    seen: '`dmp_kernel_command_replies_total{outcome="invalid"}`; dmp-kernel\'s log',
    meaning: 'a device reply is not JSON, has no valid `status`, or names no command of that device',
  },
  DMP_ERR_WEBHOOK_EGRESS: {
    owners: kernel,
    seen: "dead letter (`dmp-kernel-outbox`); dmp-kernel's log",
    meaning: "the webhook's address is not public and not allowed by `KERNEL_WEBHOOK_ALLOW_NETWORKS`",
  },
  DMP_ERR_WEBHOOK_FAILED: {
    owners: kernel,
    seen: 'dead letter (`dmp-kernel-outbox`)',
    meaning: 'the webhook failed after its retries (timeouts, connection errors, 429, 5xx)',
  },
  DMP_ERR_WEBHOOK_DROPPED: {
    owners: kernel,
    seen: 'dead letter (`dmp-kernel-outbox`)',
    meaning: 'the webhook queue was full',
  },
  DMP_ERR_WEBHOOK_REJECTED: {
    owners: kernel,
    seen: 'dead letter (`dmp-kernel-outbox`)',
    meaning: 'the receiver answered another 4xx (or a 3xx: redirects are not followed)',
  },
  DMP_ERR_WEBHOOK_MISCONFIGURED: {
    owners: kernel,
    seen: 'dead letter (`dmp-kernel-outbox`)',
    meaning: 'the webhook refers to a secret that is not configured, or its URL is not http(s)',
  },
  DMP_ERR_OUTBOX_FAILED: {
    owners: kernel,
    seen: 'dead letter (`dmp-kernel-outbox`)',
    meaning: 'any other failure of an outbox entry (its message says which)',
  },
  // ── stored history: corrections and reprocessing (`dmp telemetry`, `dmp rules reprocess`) ──
  DMP_ERR_REPROCESS_INVALID: {
    owners: ['@dmp/clickhouse'],
    seen: '`dmp rules reprocess` (exit code 1)',
    meaning: 'an empty or reversed range, one reaching into the future, no reason, or over 1,000 devices',
  },
  DMP_ERR_RULESET_VERSION_UNKNOWN: {
    owners: ['dmp CLI'],
    seen: '`dmp rules reprocess --version` (exit code 1)',
    meaning: 'the rules directory given is not that rule set version (its files are not at hand)',
  },
  DMP_ERR_GENERATION_NOT_FOUND: {
    owners: ['@dmp/clickhouse'],
    seen: '`dmp rules revert` (exit code 1)',
    meaning: 'no such alarm generation',
  },
  DMP_ERR_GENERATION_NOT_APPLIED: {
    owners: ['@dmp/clickhouse'],
    seen: '`dmp rules revert` (exit code 1)',
    meaning: 'the generation was interrupted before it was applied: run the same reprocessing again',
  },
  DMP_ERR_CLUSTER_UNSUPPORTED: {
    owners: ['@dmp/clickhouse'],
    seen: '`dmp telemetry correct`, `delete`; `dmp rules reprocess`, `revert` (exit code 1)',
    meaning: 'corrections and reprocessing run on a single ClickHouse server only (CLICKHOUSE_CLUSTER)',
  },
  // ── consumers of RocketMQ topics ──
  DMP_ERR_INVALID_MESSAGE: {
    owners: ['dmp-kernel', 'dmp-data'],
    seen: 'dead letter (never retried)',
    meaning: 'a consumed message is not what its topic carries (not JSON, not a pack, not telemetry)',
  },
  DMP_ERR_INVALID_ALARM_EVENT: {
    owners: data,
    seen: 'dead letter (never retried)',
    meaning: 'a message of the alarm topic is not an AlarmEvent',
  },
  DMP_ERR_INVALID_COMMAND_EVENT: {
    owners: data,
    seen: 'dead letter (never retried)',
    meaning: 'a message of the command topic is not a CommandEvent',
  },
  // ── storage (dmp-data) ──
  DMP_ERR_STORAGE_UNAVAILABLE: {
    owners: data,
    seen: 'redelivered; dead letter after the last redelivery',
    meaning: 'ClickHouse did not take the batch within the retry budget',
  },
  DMP_ERR_UNSTORABLE: {
    owners: data,
    seen: 'dead letter (never retried)',
    meaning: "ClickHouse refuses the message's rows themselves",
  },
  DMP_ERR_STORAGE_CLOSED: {
    owners: data,
    seen: 'redelivered',
    meaning: 'the writer was closed (shutdown) before the message could be written',
  },
  DMP_ERR_UNKNOWN: {
    owners: data,
    seen: '`dead_letters.error_code`',
    meaning: 'a dead letter that carried no code',
  },
  // ── cleaning (docs/analysts.md "Cleaning"): the whole message is refused ──
  DMP_ERR_CLEAN_MISSING_FIELD: {
    owners: ['dmp-data', 'dmp-kernel'],
    seen: 'dead letter; `dmp_data_cleaned_total` and `dmp_kernel_rule_skipped_total` reason',
    meaning: 'a required field (deviceId, messageId, kind, ts, metrics, receivedAt) is absent or null',
  },
  DMP_ERR_CLEAN_INVALID_FIELD: {
    owners: ['dmp-data', 'dmp-kernel'],
    seen: 'dead letter; `dmp_data_cleaned_total` and `dmp_kernel_rule_skipped_total` reason',
    meaning: 'a field is present but invalid (type, pattern, bounds; more than 256 metrics)',
  },
  DMP_ERR_CLEAN_TS_FUTURE: {
    owners: ['dmp-data', 'dmp-kernel'],
    seen: 'dead letter; `dmp_data_cleaned_total` and `dmp_kernel_rule_skipped_total` reason',
    meaning: '`ts` is more than `DATA_CLEAN_MAX_FUTURE_MS` ahead of the clock',
  },
  DMP_ERR_CLEAN_TS_TOO_OLD: {
    owners: ['dmp-data', 'dmp-kernel'],
    seen: 'dead letter; `dmp_data_cleaned_total` and `dmp_kernel_rule_skipped_total` reason',
    meaning: '`ts` is more than `DATA_CLEAN_MAX_AGE_MS` behind the clock',
  },
  DMP_ERR_CLEAN_NO_METRICS_LEFT: {
    owners: ['dmp-data', 'dmp-kernel'],
    seen: 'dead letter; `dmp_data_cleaned_total` and `dmp_kernel_rule_skipped_total` reason',
    meaning: 'every metric of the message was removed: nothing left to store',
  },
  // ── cleaning: one metric is removed, the rest of the message is stored ──
  DMP_ERR_CLEAN_NOT_FINITE: {
    owners: ['dmp-data', 'dmp-kernel'],
    seen: 'dead letter; `dmp_data_cleaned_total` reason',
    meaning: 'NaN or ±Infinity (`1e999` in JSON parses to Infinity)',
  },
  DMP_ERR_CLEAN_OUT_OF_RANGE: {
    owners: ['dmp-data', 'dmp-kernel'],
    seen: 'dead letter; `dmp_data_cleaned_total` reason',
    meaning: "outside the metric's `DATA_CLEAN_METRIC_RANGES` entry, or beyond ±`DATA_CLEAN_MAX_ABS_VALUE`",
  },
  DMP_ERR_CLEAN_INVALID_METRIC: {
    owners: ['dmp-data', 'dmp-kernel'],
    seen: 'dead letter; `dmp_data_cleaned_total` reason',
    meaning:
      'an invalid metric name, or a value that is no number, boolean or text of at most 256 characters',
  },
  DMP_ERR_CLEAN: {
    owners: data,
    seen: 'the tag of a packed cleaning dead letter',
    meaning: 'a packed dead letter whose entries have different `DMP_ERR_CLEAN_*` codes',
  },
  DMP_ERR_CLEAN_DEAD_LETTER_FAILED: {
    owners: data,
    seen: 'redelivered',
    meaning: 'the dead letter of a cleaned entry could not be sent (RocketMQ away)',
  },
  DMP_ERR_CLEAN_DEAD_LETTER_REFUSED: {
    owners: data,
    seen: 'dead letter of the whole message, body intact',
    meaning: 'RocketMQ refused the dead letter of a cleaned entry for good (e.g. too large)',
  },
  // ── RocketMQ (@dmp/messaging) ──
  DMP_ERR_ROCKETMQ_SEND: {
    owners: messaging,
    seen: 'retried; `dmp_rocketmq_sent_total{result="error"}`',
    meaning: 'a message could not be stored, though it might later',
  },
  DMP_ERR_ROCKETMQ_REJECTED: {
    owners: messaging,
    seen: 'never retried; `dmp_rocketmq_sent_total{result="rejected"}`',
    meaning: 'RocketMQ refused the message itself (too large, illegal property, wrong topic type)',
  },
  DMP_ERR_ROCKETMQ_NOT_READY: {
    owners: messaging,
    seen: 'retried',
    meaning: 'the RocketMQ client is not started, or stopping',
  },
  DMP_ERR_ROCKETMQ_UNAVAILABLE: {
    owners: messaging,
    seen: 'start-up fails',
    meaning: 'the RocketMQ client could not start (proxy unreachable, topic or group missing)',
  },
  DMP_ERR_ROCKETMQ_CORRUPTED: {
    owners: messaging,
    seen: 'dead letter (never retried)',
    meaning: 'a received message failed its body checksum',
  },
  DMP_ERR_HANDLER: {
    owners: messaging,
    seen: 'redelivered; dead letter after the last redelivery',
    meaning: 'a consumer handler failed with something other than a coded error',
  },
  // ── configuration ──
  DMP_ERR_CONFIG: {
    owners: ['@dmp/config'],
    seen: 'start-up fails, naming each variable',
    meaning: 'the environment is not a valid configuration',
  },
} as const satisfies Record<`DMP_${'ERR' | 'FILTERED'}_${string}`, ErrorCodeInfo>;

/** Every stable code. */
export type ErrorCode = keyof typeof ERROR_CODES;

/** Is `code` a registered stable code? */
export const isErrorCode = (code: string): code is ErrorCode => Object.hasOwn(ERROR_CODES, code);

/** The admin API status of a code, if it has one. */
export function httpStatusOf(code: string): number | undefined {
  if (!isErrorCode(code)) return undefined;
  const info: ErrorCodeInfo = ERROR_CODES[code];
  return info.http;
}

/** A named group of codes, checked against the registry. */
type Codes = Readonly<Record<string, ErrorCode>>;

/**
 * Reasons a device message is refused or filtered (dmp-mqtt, and dmp-kernel's validation):
 * also the `reason` label of the rejection metrics.
 */
export const RejectCode = {
  MalformedPayload: 'DMP_ERR_MALFORMED_PAYLOAD',
  InvalidPayload: 'DMP_ERR_INVALID_PAYLOAD',
  PayloadTooLarge: 'DMP_ERR_PAYLOAD_TOO_LARGE',
  WrongTopic: 'DMP_ERR_WRONG_TOPIC',
  UnknownDevice: 'DMP_ERR_UNKNOWN_DEVICE',
  SpoofedDevice: 'DMP_ERR_SPOOFED_DEVICE',
  Duplicate: 'DMP_ERR_DUPLICATE',
  RateLimited: 'DMP_ERR_RATE_LIMITED',
  Heartbeat: 'DMP_FILTERED_HEARTBEAT',
} as const satisfies Codes;
export type RejectCode = (typeof RejectCode)[keyof typeof RejectCode];

/** dmp-mqtt's hand-off of device messages to dmp-kernel. */
export const HandOffErrorCode = {
  /** dmp-kernel refused the message without a code of its own. */
  Rejected: 'DMP_ERR_REJECTED',
  /** The hand-off was given up; the message is not acknowledged and the broker redelivers it. */
  Abandoned: 'DMP_ERR_HANDOFF_ABANDONED',
} as const satisfies Codes;

/** Codes of the device admin API and of device authentication (docs/devices.md). */
export const DeviceErrorCode = {
  /** A device id that is, or could be, a service account's name or client id (409). */
  ReservedDeviceId: 'DMP_ERR_RESERVED_DEVICE_ID',
  /** Too many password checks running and queued: the login is denied at once (retryable). */
  AuthOverloaded: 'DMP_ERR_AUTH_OVERLOADED',
  /** Redis did not answer and nothing usable is cached: the caller waits and retries. */
  RegistryUnavailable: 'DMP_ERR_REGISTRY_UNAVAILABLE',
} as const satisfies Codes;
export type DeviceErrorCode = (typeof DeviceErrorCode)[keyof typeof DeviceErrorCode];

/** Codes of outcomes decided by dmp-kernel's Ingest itself (validation codes are {@link RejectCode}s). */
export const KernelErrorCode = {
  /** Too many snapshot sends in flight: snapshots lag or are shed, events never are. */
  ShedSnapshot: 'DMP_ERR_SHED_SNAPSHOT',
  /** Not sent because an earlier message of the same device and topic failed (order). */
  PrecedingFailed: 'DMP_ERR_PRECEDING_FAILED',
  /** The call was refused as a whole: a lane it would add to is full (answered RESOURCE_EXHAUSTED). */
  LaneFull: 'DMP_ERR_LANE_FULL',
  /** Not sent: the call was cancelled or its deadline passed before the message left its lane. */
  CallCancelled: 'DMP_ERR_CALL_CANCELLED',
  Internal: 'DMP_ERR_INTERNAL',
  /** Redis did not answer and nothing usable is cached: the message is retried later. */
  MetadataUnavailable: 'DMP_ERR_METADATA_UNAVAILABLE',
} as const satisfies Codes;

/** Stable codes of a rule expression's failure for one message (`RuleResult.code`, the error metric's label). */
export const RuleErrorCode = {
  /** The expression ran out of its step budget (STEP_BUDGET) and was stopped. */
  BudgetExceeded: 'DMP_ERR_RULE_BUDGET',
  /** Any other evaluation error: wrong types, an invalid dynamic regular expression, … */
  EvaluationFailed: 'DMP_ERR_RULE_EVALUATION',
} as const satisfies Codes;
export type RuleErrorCode = (typeof RuleErrorCode)[keyof typeof RuleErrorCode];

/** A rule set as a whole (files, admin API). */
export const RuleSetErrorCode = {
  /** A refused rule set (422 on the admin API); the running one stays. */
  Invalid: 'DMP_ERR_RULESET_INVALID',
} as const satisfies Codes;

/** Alarms: dmp-kernel's conditions and admin API, and dmp-data's store of alarm events. */
export const AlarmErrorCode = {
  /** Another replica changed the condition at the same time, again and again: retried later. */
  Conflict: 'DMP_ERR_ALARM_CONFLICT',
  NotFound: 'DMP_ERR_ALARM_NOT_FOUND',
  NotAcknowledgeable: 'DMP_ERR_ALARM_NOT_ACKNOWLEDGEABLE',
  /** A message of the alarm topic that is not an AlarmEvent (dmp-data): dead-lettered, never retried. */
  InvalidAlarmEvent: 'DMP_ERR_INVALID_ALARM_EVENT',
} as const satisfies Codes;

/** The command ledger: dmp-kernel's lifecycle of linkage commands, and dmp-data's store of it. */
export const CommandErrorCode = {
  NotFound: 'DMP_ERR_COMMAND_NOT_FOUND',
  /** Replied `ok`, still under way, or resent as often as allowed. */
  NotResendable: 'DMP_ERR_COMMAND_NOT_RESENDABLE',
  /** The command changed under every attempt: try again. */
  Conflict: 'DMP_ERR_COMMAND_CONFLICT',
  /** A device reply that cannot be applied (not JSON, no valid status, unknown command): counted, logged. */
  InvalidReply: 'DMP_ERR_INVALID_COMMAND_REPLY',
  /** A message of the command topic that is not a CommandEvent (dmp-data): dead-lettered, never retried. */
  InvalidEvent: 'DMP_ERR_INVALID_COMMAND_EVENT',
} as const satisfies Codes;

/** The alarm outbox: commands and webhooks that rule transitions oblige. */
export const OutboxErrorCode = {
  /** The broker did not acknowledge the command in time (or is unreachable): it is sent again later. */
  CommandUnavailable: 'DMP_ERR_COMMAND_UNAVAILABLE',
  /** The webhook's address is not public and not allowed by KERNEL_WEBHOOK_ALLOW_NETWORKS. */
  WebhookEgressRefused: 'DMP_ERR_WEBHOOK_EGRESS',
  /** The webhook failed after its retries (timeouts, connection errors, 429, 5xx). */
  WebhookFailed: 'DMP_ERR_WEBHOOK_FAILED',
  /** The webhook queue was full. */
  WebhookDropped: 'DMP_ERR_WEBHOOK_DROPPED',
  /** The receiver answered another 4xx (or a 3xx: redirects are not followed). */
  WebhookRejected: 'DMP_ERR_WEBHOOK_REJECTED',
  /** The webhook refers to a secret that is not configured, or its URL is not http(s). */
  WebhookMisconfigured: 'DMP_ERR_WEBHOOK_MISCONFIGURED',
  /** Any other failure (its message says which). */
  Failed: 'DMP_ERR_OUTBOX_FAILED',
} as const satisfies Codes;

/** Jobs on stored history: corrections (`dmp telemetry`) and reprocessing (`dmp rules reprocess`). */
export const HistoryErrorCode = {
  ReprocessInvalid: 'DMP_ERR_REPROCESS_INVALID',
  /** `--version` names another rule set version than the rules directory given. */
  RulesetVersionUnknown: 'DMP_ERR_RULESET_VERSION_UNKNOWN',
  GenerationNotFound: 'DMP_ERR_GENERATION_NOT_FOUND',
  /** Revert of a generation that was interrupted before it was applied. */
  GenerationNotApplied: 'DMP_ERR_GENERATION_NOT_APPLIED',
  /** On a ClickHouse cluster (CLICKHOUSE_CLUSTER): single server only for now. */
  ClusterUnsupported: 'DMP_ERR_CLUSTER_UNSUPPORTED',
} as const satisfies Codes;

/** dmp-data's storage of rows in ClickHouse. */
export const StorageErrorCode = {
  /** ClickHouse did not take the batch within the retry budget: the message is redelivered later. */
  Unavailable: 'DMP_ERR_STORAGE_UNAVAILABLE',
  /** ClickHouse refuses this message's rows themselves: retrying cannot help (dead-letter). */
  Unstorable: 'DMP_ERR_UNSTORABLE',
  /** The writer was closed before the message could be written. */
  Closed: 'DMP_ERR_STORAGE_CLOSED',
  /** The `error_code` of a dead letter that carried none. */
  Unknown: 'DMP_ERR_UNKNOWN',
} as const satisfies Codes;

/**
 * Why cleaning removed something: the `reason` of `dmp_data_cleaned_total` (and of dmp-kernel's
 * `dmp_kernel_rule_skipped_total`) and the `error_code` of the `dead_letters` row. Stable: analysts and
 * alerts select on them.
 */
export const CleanCode = {
  // ── the whole message is refused (nothing of it is stored) ──
  /** A required field (deviceId, messageId, kind, ts, metrics, receivedAt) is absent or null. */
  MissingField: 'DMP_ERR_CLEAN_MISSING_FIELD',
  /** A field is present but invalid (wrong type, pattern, bounds; more than 256 metrics). */
  InvalidField: 'DMP_ERR_CLEAN_INVALID_FIELD',
  /** `ts` is more than DATA_CLEAN_MAX_FUTURE_MS ahead of the clock of the app that checks it. */
  TsFuture: 'DMP_ERR_CLEAN_TS_FUTURE',
  /** `ts` is more than DATA_CLEAN_MAX_AGE_MS behind the clock of the app that checks it. */
  TsTooOld: 'DMP_ERR_CLEAN_TS_TOO_OLD',
  /** Every metric of the message was removed (below): nothing left to store. */
  NoMetricsLeft: 'DMP_ERR_CLEAN_NO_METRICS_LEFT',
  // ── one metric is removed, the rest of the message is stored ──
  /** NaN or ±Infinity (`1e999` in JSON parses to Infinity). */
  NotFinite: 'DMP_ERR_CLEAN_NOT_FINITE',
  /** Outside the metric's DATA_CLEAN_METRIC_RANGES entry, or beyond ±DATA_CLEAN_MAX_ABS_VALUE. */
  OutOfRange: 'DMP_ERR_CLEAN_OUT_OF_RANGE',
  /** An invalid metric name, or a value that is no number, boolean or text of at most 256 characters. */
  InvalidMetric: 'DMP_ERR_CLEAN_INVALID_METRIC',
} as const satisfies Codes;
export type CleanCode = (typeof CleanCode)[keyof typeof CleanCode];

/** Errors of dmp-data's cleaner itself (not reasons: those are {@link CleanCode}). */
export const CleaningErrorCode = {
  /** The tag of a packed dead letter whose entries have different codes. */
  Mixed: 'DMP_ERR_CLEAN',
  /** The dead letter of a cleaned entry could not be sent (RocketMQ away): retryable, the message comes again. */
  DeadLetterFailed: 'DMP_ERR_CLEAN_DEAD_LETTER_FAILED',
  /**
   * RocketMQ refused the dead letter for good (e.g. too large): not retryable, so the consumer
   * dead-letters the whole RocketMQ message instead — its body intact, nothing lost.
   */
  DeadLetterRefused: 'DMP_ERR_CLEAN_DEAD_LETTER_REFUSED',
} as const satisfies Codes;

/** RocketMQ: @dmp/messaging's errors, and what the apps' consumers make of a message. */
export const MessagingErrorCode = {
  /** The message could not be stored, though it might later: retry it. */
  SendFailed: 'DMP_ERR_ROCKETMQ_SEND',
  /** RocketMQ refused the message itself (too large, illegal property, wrong topic type): never retry. */
  SendRejected: 'DMP_ERR_ROCKETMQ_REJECTED',
  /** The client is not started (or stopping). */
  NotReady: 'DMP_ERR_ROCKETMQ_NOT_READY',
  /** The client could not start (proxy unreachable, topic or group missing). */
  Unavailable: 'DMP_ERR_ROCKETMQ_UNAVAILABLE',
  /** A received message failed its body checksum. */
  Corrupted: 'DMP_ERR_ROCKETMQ_CORRUPTED',
  /** A handler failed with something other than a DmpError. */
  HandlerFailed: 'DMP_ERR_HANDLER',
  /** A consumed message's body is not what its topic carries: dead-lettered, never retried. */
  InvalidMessage: 'DMP_ERR_INVALID_MESSAGE',
} as const satisfies Codes;

/** Configuration refused at start-up (@dmp/config). */
export const ConfigErrorCode = {
  Invalid: 'DMP_ERR_CONFIG',
} as const satisfies Codes;

export class DmpError extends Error {
  constructor(
    readonly code: string,
    message: string,
    readonly retryable = false,
    options?: ErrorOptions,
  ) {
    super(message, options);
    this.name = 'DmpError';
  }
}

/** An error's message, or the thrown value as text (anything may be thrown). */
export const errorMessage = (error: unknown): string =>
  error instanceof Error ? error.message : String(error);
