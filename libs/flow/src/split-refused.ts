/** A part of a batch that failed: one item refused for good, or a part that failed for another reason. */
export interface FailedPart<T> {
  items: readonly T[];
  error: unknown;
  /** True when `isRefusal` accepted the error and the part is a single item: that item is the culprit. */
  refused: boolean;
}

/**
 * Sends a batch; when the send is refused for good (`isRefusal`), bisects it and sends each half in
 * turn, until the refused items are alone — so one bad item cannot take its neighbours with it, at
 * about 2 × log2(n) extra sends per culprit. Halves go one after the other, in order, so items keep
 * their relative order. Resolves with the parts that failed (empty: everything was sent); any other
 * error of a part fails that part without splitting it. Never rejects.
 */
export async function splitRefused<T>(
  items: readonly T[],
  send: (items: readonly T[]) => Promise<void>,
  isRefusal: (error: unknown) => boolean,
): Promise<FailedPart<T>[]> {
  if (items.length === 0) return [];
  try {
    await send(items);
    return [];
  } catch (error) {
    if (!isRefusal(error)) return [{ items, error, refused: false }];
    if (items.length === 1) return [{ items, error, refused: true }];
    const half = Math.ceil(items.length / 2);
    const first = await splitRefused(items.slice(0, half), send, isRefusal);
    const second = await splitRefused(items.slice(half), send, isRefusal);
    return [...first, ...second];
  }
}
