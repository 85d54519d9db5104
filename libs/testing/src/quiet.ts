/** A logger for the RocketMQ client (rocketmq-client-nodejs) that says nothing. */
export const silentClientLogger = { info() {}, warn() {}, error() {}, debug() {} };

/** A Nest LoggerService that says nothing, for @dmp/messaging classes used directly in tests. */
export const silentNestLogger = { log() {}, warn() {}, error() {}, debug() {}, verbose() {} };

/**
 * Receives and acknowledges until a receive comes back empty: what earlier runs left in a group's
 * topics (and a new group gets its offsets). Returns what it took, in order.
 */
export async function drainReceived<T>(
  receive: () => Promise<T[]>,
  ack: (message: T) => Promise<unknown>,
): Promise<T[]> {
  const drained: T[] = [];
  for (let messages = await receive(); messages.length > 0; messages = await receive()) {
    drained.push(...messages);
    await Promise.all(messages.map((message) => ack(message)));
  }
  return drained;
}
