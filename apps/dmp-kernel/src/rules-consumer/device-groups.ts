/**
 * Indexes of a batch's messages grouped by device, each group in batch order, groups in order of
 * first appearance: a device's messages are evaluated one after the other, devices concurrently.
 */
export function groupByDevice(messages: readonly { deviceId: string }[]): number[][] {
  const groups = new Map<string, number[]>();
  messages.forEach((message, index) => {
    const group = groups.get(message.deviceId);
    if (group) group.push(index);
    else groups.set(message.deviceId, [index]);
  });
  return [...groups.values()];
}
