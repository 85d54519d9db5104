/** What {@link RejectionLogLimiter} held back for one reason code during one window. */
export interface SuppressedRejections {
  reason: string;
  /** Refusals not logged one by one (all of them counted in metrics and dead-lettered). */
  count: number;
  /** Distinct devices among them (at most {@link MAX_DEVICES_COUNTED}; more reads as that many). */
  devices: number;
  /** A few of them, to start looking. */
  sample: string[];
  windowMs: number;
}

interface Window {
  startedAt: number;
  logged: number;
  suppressed: number;
  devices: Set<string>;
}

const MAX_DEVICES_COUNTED = 1_000;
const SAMPLE = 5;

/**
 * Keeps the log readable through a flood of refused messages: per reason code, the first
 * `linesPerWindow` refusals of each window are logged one by one, the rest are counted and summed up
 * in one line when the window ends ("1,234 more DMP_ERR_UNKNOWN_DEVICE refusals from 812 devices, e.g.
 * …"). Only the log is limited: every refusal is still counted in metrics and dead-lettered.
 */
export class RejectionLogLimiter {
  private readonly windows = new Map<string, Window>();
  private timer?: NodeJS.Timeout;

  constructor(
    private readonly options: { linesPerWindow: number; windowMs: number },
    private readonly summarize: (summary: SuppressedRejections) => void,
    private readonly now: () => number = Date.now,
  ) {}

  /** Whether to log this refusal in detail; if not, it is counted for the window's summary. */
  admit(reason: string, deviceId = '-'): boolean {
    const now = this.now();
    let window = this.windows.get(reason);
    if (window && now - window.startedAt >= this.options.windowMs) {
      this.report(reason, window);
      window = undefined;
    }
    if (!window) {
      window = { startedAt: now, logged: 0, suppressed: 0, devices: new Set() };
      this.windows.set(reason, window);
    }
    if (window.logged < this.options.linesPerWindow) {
      window.logged++;
      return true;
    }
    window.suppressed++;
    if (window.devices.size < MAX_DEVICES_COUNTED) window.devices.add(deviceId);
    // The summary is due even if the flood stops: a timer (not keeping the process alive) sees to it.
    this.timer ??= setTimeout(() => {
      this.timer = undefined;
      this.flush();
    }, this.options.windowMs).unref();
    return false;
  }

  /** Reports the windows that ended (all of them with `all`, e.g. on shutdown). */
  flush(all = false): void {
    const now = this.now();
    for (const [reason, window] of this.windows) {
      if (!all && now - window.startedAt < this.options.windowMs) continue;
      this.report(reason, window);
      this.windows.delete(reason);
    }
    if (all && this.timer) {
      clearTimeout(this.timer);
      this.timer = undefined;
    }
  }

  private report(reason: string, window: Window): void {
    if (window.suppressed === 0) return;
    this.summarize({
      reason,
      count: window.suppressed,
      devices: window.devices.size,
      sample: [...window.devices].slice(0, SAMPLE),
      windowMs: this.options.windowMs,
    });
  }
}
