/**
 * Watches the signals of many items with one 'abort' listener per signal, not one per item: a
 * connection's or an Ingest call's signal is shared by thousands of items, and EventTarget's
 * add/removeEventListener are linear in its listeners. On abort, `onAbort` gets the items still watched.
 */
export class AbortWatch<T> {
  private readonly watches = new Map<AbortSignal, { items: Set<T>; listener: () => void }>();

  constructor(private readonly onAbort: (signal: AbortSignal, items: ReadonlySet<T>) => void) {}

  add(signal: AbortSignal, item: T): void {
    let watch = this.watches.get(signal);
    if (!watch) {
      const items = new Set<T>();
      const listener = () => {
        this.watches.delete(signal);
        this.onAbort(signal, items);
      };
      watch = { items, listener };
      this.watches.set(signal, watch);
      signal.addEventListener('abort', listener, { once: true });
    }
    watch.items.add(item);
  }

  /** Stops watching an item (no-op for one not watched); the last one of a signal removes its listener. */
  delete(signal: AbortSignal | undefined, item: T): void {
    const watch = signal && this.watches.get(signal);
    if (!watch) return;
    watch.items.delete(item);
    if (watch.items.size > 0) return;
    this.watches.delete(signal);
    signal.removeEventListener('abort', watch.listener);
  }
}
