/**
 * Releases PUBACKs of one connection in the order the PUBLISH packets arrived, whatever order their
 * processing finishes in. MQTT 5 requires it ([MQTT-4.6.0-2]: a client sends PUBACKs in the order the
 * PUBLISH packets were received), Eclipse Paho does the same for manual acknowledgement, and it keeps
 * the broker's view simple: everything before the oldest unacknowledged message was taken.
 *
 * A message that is never settled (left for redelivery) holds back the acknowledgements behind it; the
 * broker then stops sending once Receive Maximum messages are unacknowledged, and the connection is
 * replaced so the broker redelivers them.
 *
 * One exception: a message settled with {@link NO_ACK} is released in its turn without a PUBACK, and
 * the messages behind it are acknowledged as they are settled. It stays unacknowledged in the broker's
 * session (the broker redelivers it on the session's next connection), and its PUBACK, when a later
 * connection sends it, comes after those of messages received after it: the rule above is waived for
 * that one message, so that a message that cannot be decided for a while (the device registry away)
 * does not stop every acknowledgement of the connection.
 */
/** Settles a message without a PUBACK: it is released in its turn, and left to the broker to redeliver. */
export const NO_ACK = -1;

export class AckSequencer<T> {
  private slots: Slot<T>[] = [];
  private head = 0;

  constructor(private readonly release: (item: T, reasonCode: number) => void) {}

  /** Messages received and not yet released. */
  get size(): number {
    return this.slots.length - this.head;
  }

  add(item: T): Slot<T> {
    const slot: Slot<T> = { item, reasonCode: undefined };
    this.slots.push(slot);
    return slot;
  }

  /**
   * Marks a message processed; releases it and every processed message behind it once it is the oldest.
   * `reasonCode` is the PUBACK's, or {@link NO_ACK}.
   */
  settle(slot: Slot<T>, reasonCode: number): void {
    if (slot.reasonCode !== undefined) return;
    slot.reasonCode = reasonCode;
    while (this.head < this.slots.length) {
      const next = this.slots[this.head];
      if (next.reasonCode === undefined) break;
      this.head++;
      this.release(next.item, next.reasonCode);
    }
    // Compact now and then instead of shifting on every release.
    if (this.head > 1024 && this.head * 2 > this.slots.length) {
      this.slots = this.slots.slice(this.head);
      this.head = 0;
    }
  }

  /** Everything not released yet (oldest first), e.g. when the connection is gone. Empties the sequencer. */
  drain(): T[] {
    const rest = this.slots.slice(this.head).map((slot) => slot.item);
    this.slots = [];
    this.head = 0;
    return rest;
  }
}

export interface Slot<T> {
  readonly item: T;
  reasonCode: number | undefined;
}
