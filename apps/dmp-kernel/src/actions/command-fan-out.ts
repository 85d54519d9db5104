/**
 * Linkage commands with several independent brokers (docs/adr/0008): the kernel does not know which
 * broker a device is connected to, so a command goes to every broker and counts as sent once one of
 * them acknowledged it (PUBACK). Pure decisions, used by CommandPublisher.
 */

/**
 * The brokers to publish on: the connected ones only. With none connected, none: the command fails at
 * once and stays in the outbox, which sends it again later. A publish left waiting in a disconnected
 * client would go out on its reconnection as well — a second copy beside the outbox's.
 */
export function commandTargets(connected: readonly boolean[]): number[] {
  return connected.flatMap((isUp, index) => (isUp ? [index] : []));
}

/**
 * Resolves with the index of the first broker that acknowledged; rejects only once every one failed,
 * with each broker's reason. A broker that did not take it is no failure of the command: the device is
 * connected to one broker at a time, and the others have nobody to deliver to.
 */
export async function firstAcknowledged(
  attempts: readonly { broker: string; acknowledged: Promise<unknown> }[],
): Promise<string> {
  try {
    return await Promise.any(attempts.map(({ broker, acknowledged }) => acknowledged.then(() => broker)));
  } catch (error) {
    const reasons = error instanceof AggregateError ? error.errors : [error];
    throw new Error(
      attempts
        .map(({ broker }, i) => `${broker}: ${(reasons[i] as Error | undefined)?.message ?? 'failed'}`)
        .join('; '),
      { cause: error },
    );
  }
}
