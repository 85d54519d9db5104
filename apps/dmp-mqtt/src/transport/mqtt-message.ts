/** What the MQTT ingest transport hands to a Nest handler, and what the handler answers. */

/** MQTT 5 PUBLISH properties a handler may need (content type, user properties such as `traceparent`…). */
export interface MqttMessageProperties {
  contentType?: string;
  /** Repeated keys are allowed by MQTT 5 and come as arrays. */
  userProperties: Readonly<Record<string, string | string[]>>;
  /** Seconds the message had left to live when the broker sent it. */
  messageExpiryInterval?: number;
  payloadFormatIndicator?: boolean;
}

/** The `data` argument of a handler: one message as the broker delivered it. */
export interface MqttMessage {
  readonly topic: string;
  /** Raw payload, not decoded: decoding and validation are the handler's job. */
  readonly payload: Buffer;
  readonly qos: 0 | 1 | 2;
  readonly properties: MqttMessageProperties;
}

/** PUBACK reason codes (MQTT 5 §3.4.2.1). A code ≥ 0x80 still acknowledges: the broker does not redeliver. */
export const PubackReason = {
  Success: 0x00,
  UnspecifiedError: 0x80,
  ImplementationSpecificError: 0x83,
  NotAuthorized: 0x87,
  TopicNameInvalid: 0x90,
  QuotaExceeded: 0x97,
  PayloadFormatInvalid: 0x99,
} as const;
export type PubackReason = (typeof PubackReason)[keyof typeof PubackReason];

/**
 * A handler's answer. `ack`: the message is taken care of (handed off, filtered, or rejected as bad input);
 * the transport acknowledges it with the reason code. `redeliver`: it could not be handed off; it is left
 * unacknowledged and the broker delivers it again (the transport reconnects to its persistent session).
 * A handler that throws is treated as `redeliver`.
 *
 * `redeliver` with `after` ({@link redeliverAfter}): the message cannot be decided until something comes
 * back (the device registry). It is left unacknowledged *without* holding back the acknowledgements of
 * the messages behind it (see AckSequencer's NO_ACK), and the connection is replaced — for the broker to
 * redeliver it — once `after` resolves, not at once (at once, it would come back first on the new
 * connection and hold everything behind it again).
 */
export type MqttSettlement =
  | { readonly action: 'ack'; readonly reasonCode: PubackReason }
  | { readonly action: 'redeliver'; readonly reason: string; readonly after?: Promise<void> };

export const ackWith = (reasonCode: PubackReason = PubackReason.Success): MqttSettlement => ({
  action: 'ack',
  reasonCode,
});
export const redeliver = (reason: string): MqttSettlement => ({ action: 'redeliver', reason });
export const redeliverAfter = (reason: string, after: Promise<void>): MqttSettlement => ({
  action: 'redeliver',
  reason,
  after,
});

export function isMqttSettlement(value: unknown): value is MqttSettlement {
  if (typeof value !== 'object' || value === null) return false;
  const action = (value as { action?: unknown }).action;
  return action === 'ack' || action === 'redeliver';
}

/** How a delivery ended for the transport. */
export interface MqttDeliveryEnd {
  /** A PUBACK was sent (QoS 1), or the message was handled (QoS 0). */
  acked: boolean;
  reasonCode?: number;
  /** Why it was not acknowledged. */
  reason?: string;
  /** Epoch milliseconds (fractional). */
  at: number;
}

/** Epoch milliseconds with sub-millisecond precision, for span timestamps and latencies. */
export const preciseNow = () => performance.timeOrigin + performance.now();
