import {
  DEAD_LETTER_SOURCE_KERNEL_OUTBOX,
  DeadLetterProperty,
  deadLetterPropertyValue,
  deviceCommandTopic,
  OutboxErrorCode,
} from '@dmp/contracts';
import { backoffDelay } from '@dmp/flow';
import type { OutboxEntry } from './outbox';

/** How carrying out an outbox entry ended. */
export type OutboxResult =
  | { kind: 'done' }
  /** It may work later (broker unreachable, no PUBACK in time, receiver down, queue full). */
  | { kind: 'failed'; code: string; message: string }
  /** It cannot work as it is (webhook answered 4xx, refused by the egress policy, missing secret). */
  | { kind: 'refused'; code: string; message: string };

export interface OutboxRetryPolicy {
  /** Delay after the first failure, doubled per failure… */
  baseMs: number;
  /** …up to this. */
  maxMs: number;
  /** Attempts before the entry is given up and dead-lettered. */
  maxAttempts: number;
}

export type OutboxDecision =
  | { kind: 'complete' }
  | { kind: 'retry'; delayMs: number }
  | { kind: 'dead_letter'; reason: 'non_retryable' | 'max_delivery_attempts' };

/**
 * What to do with an outbox entry after an attempt (`attempts` counts the failed ones, this one
 * included): remove it when done; retry a failure after the project's exponential backoff (the
 * RocketMQ consumers' own) until `maxAttempts`, then dead-letter it; dead-letter a refusal at once.
 */
export function decideOutbox(
  result: OutboxResult,
  attempts: number,
  policy: OutboxRetryPolicy,
): OutboxDecision {
  if (result.kind === 'done') return { kind: 'complete' };
  if (result.kind === 'refused') return { kind: 'dead_letter', reason: 'non_retryable' };
  if (attempts >= policy.maxAttempts) return { kind: 'dead_letter', reason: 'max_delivery_attempts' };
  return { kind: 'retry', delayMs: backoffDelay(attempts, { baseMs: policy.baseMs, maxMs: policy.maxMs }) };
}

/** Where an entry goes: the device's command topic, or the webhook's rule (its URL may hold secrets). */
export function outboxTarget(entry: OutboxEntry): string {
  switch (entry.kind) {
    case 'event':
      return 'alarm event';
    case 'command_event':
      return 'command event';
    case 'command':
      return deviceCommandTopic(entry.command.deviceId);
    case 'webhook':
      return `webhook of rule ${entry.webhook.ruleId}`;
  }
}

function deviceOf(entry: OutboxEntry): string {
  switch (entry.kind) {
    case 'event':
      return entry.event.deviceId;
    case 'command':
      return entry.command.deviceId;
    case 'command_event':
      return entry.commandEvent.command.deviceId;
    case 'webhook':
      return entry.webhook.deviceId;
  }
}

/**
 * The dead letter of an entry given up on, in the shape every dead letter has (libs/contracts
 * dead-letter.ts): the body is the entry itself, so a replay carries out exactly it, under its id.
 */
export function outboxDeadLetter(
  entry: OutboxEntry,
  failure: { code: string; message: string; reason: string; attempts: number; instance: string; now: number },
): { body: Buffer; keys: string[]; tag: string; properties: Record<string, string> } {
  const body = Buffer.from(JSON.stringify(entry));
  return {
    body,
    keys: [entry.id],
    tag: entry.kind,
    properties: {
      [DeadLetterProperty.errorCode]: failure.code,
      [DeadLetterProperty.errorMessage]: deadLetterPropertyValue(failure.message),
      [DeadLetterProperty.reason]: failure.reason,
      [DeadLetterProperty.source]: DEAD_LETTER_SOURCE_KERNEL_OUTBOX,
      [DeadLetterProperty.sourceInstance]: deadLetterPropertyValue(failure.instance),
      [DeadLetterProperty.sourceTopic]: deadLetterPropertyValue(outboxTarget(entry)),
      [DeadLetterProperty.sourceMessageId]: deadLetterPropertyValue(entry.id),
      [DeadLetterProperty.deviceId]: deadLetterPropertyValue(deviceOf(entry)),
      [DeadLetterProperty.deliveryAttempt]: String(failure.attempts),
      [DeadLetterProperty.receivedAt]: String(Math.floor(failure.now)),
      [DeadLetterProperty.contentType]: 'application/json',
      [DeadLetterProperty.payloadSize]: String(body.length),
    },
  };
}

/** The outbox entry a kernel dead letter carries; throws when the payload is not one. */
export function outboxEntryOf(payload: Buffer): OutboxEntry {
  const entry = JSON.parse(payload.toString('utf8')) as Partial<OutboxEntry> | null;
  const ok =
    !!entry &&
    typeof entry.id === 'string' &&
    ((entry.kind === 'command' && typeof entry.command === 'object') ||
      (entry.kind === 'webhook' && typeof entry.webhook === 'object') ||
      (entry.kind === 'event' && typeof entry.event === 'object') ||
      (entry.kind === 'command_event' && typeof entry.commandEvent === 'object'));
  if (!ok) throw new Error('not a dmp-kernel outbox entry');
  return entry as OutboxEntry;
}

/** How a webhook delivery's end counts for its outbox entry. */
export function webhookOutboxResult(
  result: 'ok' | 'failed' | 'rejected' | 'dropped' | 'misconfigured' | 'refused',
  deliveryId: string,
  egressRefusedCode: string,
): OutboxResult {
  switch (result) {
    case 'ok':
      return { kind: 'done' };
    case 'failed':
      return {
        kind: 'failed',
        code: OutboxErrorCode.WebhookFailed,
        message: `webhook ${deliveryId} failed after its retries`,
      };
    case 'dropped':
      return {
        kind: 'failed',
        code: OutboxErrorCode.WebhookDropped,
        message: `webhook ${deliveryId}: queue full`,
      };
    case 'rejected':
      return {
        kind: 'refused',
        code: OutboxErrorCode.WebhookRejected,
        message: `webhook ${deliveryId} rejected by its receiver`,
      };
    case 'misconfigured':
      return {
        kind: 'refused',
        code: OutboxErrorCode.WebhookMisconfigured,
        message: `webhook ${deliveryId}: unknown secret or not an http(s) URL`,
      };
    case 'refused':
      return {
        kind: 'refused',
        code: egressRefusedCode,
        message: `webhook ${deliveryId}: address not allowed by the egress policy`,
      };
  }
}
