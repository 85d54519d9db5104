/**
 * The pure parts of the hops benchmark: which hops to run and how much to send them, and what a hop's
 * window says (rate, CPU per message of every process involved, rate per core). Unit-tested in
 * analysis.spec.ts.
 */
export const HOPS = ['mqtt', 'kernel', 'data'] as const;
export type HopName = (typeof HOPS)[number];

/** The app each hop measures. */
export const HOP_APP = { mqtt: 'dmp-mqtt', kernel: 'dmp-kernel', data: 'dmp-data' } as const;

/** `--hops mqtt,data`: known names, each once, in the chain's order. */
export function parseHops(value: string): HopName[] {
  const names = value
    .split(',')
    .map((v) => v.trim())
    .filter(Boolean);
  const unknown = names.filter((n) => !(HOPS as readonly string[]).includes(n));
  if (unknown.length) throw new Error(`unknown hop(s): ${unknown.join(', ')} (of ${HOPS.join(', ')})`);
  if (names.length === 0) throw new Error(`no hop named (of ${HOPS.join(', ')})`);
  return HOPS.filter((h) => names.includes(h));
}

export interface HopsPlan {
  /** Messages measured per hop (after the warm-up). */
  messages: number;
  /** Messages sent first, unmeasured: connections, caches and the JIT warm up, queues fill. */
  warmupMessages: number;
  /** What the publisher offers dmp-mqtt, msg/s: more than it takes, so that it runs at its maximum. */
  mqttOfferedPerSecond: number;
  /** A hop that makes no progress for this long ends (and says how many messages it missed). */
  stallMs: number;
}

export function hopsPlan(quick: boolean, overrides: { messages?: number } = {}): HopsPlan {
  return {
    messages: overrides.messages ?? (quick ? 50_000 : 300_000),
    warmupMessages: quick ? 5_000 : 20_000,
    mqttOfferedPerSecond: quick ? 20_000 : 40_000,
    stallMs: 30_000,
  };
}

/** What one hop did in its measured window. */
export interface HopFigures {
  hop: HopName;
  app: string;
  messages: number;
  seconds: number;
  msgPerSec: number;
  /** µs of one core the hop's app spent per message. */
  appCpuMicrosPerMessage: number;
  /** Messages a second one core of the app's CPU carries at that cost (10⁶ ÷ µs per message). */
  appMsgPerSecPerCore: number;
  /** µs of one core per message of every process tracked (the app, the servers it involves, the bench). */
  cpuMicrosPerMessage: Record<string, number>;
  /** Those processes' CPU over the window, seconds of one core. */
  cpuSeconds: Record<string, number>;
}

/**
 * A hop's figures from the messages it handled, the seconds it took them (first to last) and each
 * process's CPU meanwhile. The CPU is counted per message, not per second, so a pause at the end (a hop
 * waiting for messages that do not come) does not make a message look cheaper.
 */
export function hopFigures({
  hop,
  messages,
  seconds,
  cpuSeconds,
}: {
  hop: HopName;
  messages: number;
  seconds: number;
  cpuSeconds: Readonly<Record<string, number>>;
}): HopFigures {
  const app = HOP_APP[hop];
  const msgPerSec = seconds > 0 ? messages / seconds : Number.NaN;
  const cpuMicrosPerMessage = Object.fromEntries(
    Object.entries(cpuSeconds).map(([name, cpu]) => [
      name,
      messages > 0 ? (cpu * 1e6) / messages : Number.NaN,
    ]),
  );
  const appCpuMicrosPerMessage = cpuMicrosPerMessage[app] ?? Number.NaN;
  return {
    hop,
    app,
    messages,
    seconds,
    msgPerSec,
    appCpuMicrosPerMessage,
    appMsgPerSecPerCore: appCpuMicrosPerMessage > 0 ? 1e6 / appCpuMicrosPerMessage : Number.NaN,
    cpuMicrosPerMessage,
    cpuSeconds: { ...cpuSeconds },
  };
}

/** The top-level `summary` of the hops' JSON: per hop, its rate and its app's CPU per message. */
export function hopsSummary(hops: readonly HopFigures[]): Record<
  string,
  {
    msgPerSec: number | null;
    appCpuMicrosPerMessage: number | null;
    appMsgPerSecPerCore: number | null;
  }
> {
  const finite = (v: number) => (Number.isFinite(v) ? Math.round(v) : null);
  return Object.fromEntries(
    hops.map((h) => [
      h.hop,
      {
        msgPerSec: finite(h.msgPerSec),
        appCpuMicrosPerMessage: Number.isFinite(h.appCpuMicrosPerMessage)
          ? Number(h.appCpuMicrosPerMessage.toFixed(1))
          : null,
        appMsgPerSecPerCore: finite(h.appMsgPerSecPerCore),
      },
    ]),
  );
}
