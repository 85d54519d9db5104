/**
 * Devices with a message left for a later redelivery, per connection (its delivery signal). The broker
 * redelivers that message on the session's next connection, before anything newer; the device's later
 * messages still on the old connection must therefore be left for redelivery too, behind it, or they
 * would be handed off first and overtake it. Entries go with their connection (a WeakMap on its signal).
 */
export class LeftBehind {
  private readonly byConnection = new WeakMap<AbortSignal, Map<string, Promise<void>>>();

  /** Marks the device's stream on this connection as left for redelivery once `after` resolves. */
  leave(connection: AbortSignal, deviceId: string, after: Promise<void>): void {
    let devices = this.byConnection.get(connection);
    if (!devices) this.byConnection.set(connection, (devices = new Map<string, Promise<void>>()));
    if (!devices.has(deviceId)) devices.set(deviceId, after);
  }

  /** When a message of this device on this connection must follow one left for redelivery: what it waits for. */
  of(connection: AbortSignal, deviceId: string): Promise<void> | undefined {
    return this.byConnection.get(connection)?.get(deviceId);
  }
}
