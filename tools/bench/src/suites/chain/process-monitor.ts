import { execFileSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { cpuPercent, parseMachineStat, parseProcStat, parseVmRss } from './analysis';

/**
 * CPU and resident memory of named processes (the apps the bench started, the stack's servers found by
 * their command line, the bench itself) and of the whole machine, from /proc. `mark()` starts a window,
 * `sample()` keeps the peak RSS, `window()` reports CPU % of one core since the mark.
 */
export interface ProcessUsage {
  name: string;
  pid: number;
  /** % of one core over the window (200 % = two cores). */
  cpuPercent: number;
  /** Peak resident memory seen in the window, MiB. */
  rssMiB: number;
}

/**
 * Servers of the local stack, found by a fragment of their command line — not those of its cluster
 * profile, which may run beside it (a proxy in cluster mode, ClickHouse nodes `clickhouse-s{shard}r{replica}`).
 */
export const STACK_SERVERS: readonly { name: string; pattern: RegExp }[] = [
  { name: 'mosquitto', pattern: /(^|\/)mosquitto\b/ },
  { name: 'rocketmq', pattern: /ProxyStartup(?!.*-pm cluster)/ },
  { name: 'clickhouse', pattern: /clickhouse(-server| server)(?!.*clickhouse-s\d+r\d+)/ },
  { name: 'redis', pattern: /(^|\/)redis-server\b/ },
];

const TICKS_PER_SECOND = (() => {
  try {
    return Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
  } catch {
    return 100;
  }
})();

/** The first process whose command line matches (undefined when none does). */
export function findProcess(pattern: RegExp): number | undefined {
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const cmdline = readFileSync(`/proc/${entry}/cmdline`, 'utf8').replaceAll('\0', ' ');
      if (pattern.test(cmdline)) return Number(entry);
    } catch {
      // gone meanwhile
    }
  }
  return undefined;
}

interface Tracked {
  name: string;
  pid: number;
  ticksAtMark: number;
  peakRss: number;
}

export class ProcessMonitor {
  private readonly tracked: Tracked[] = [];
  private markedAt = Date.now();
  private machineAtMark = parseMachineStat(readFileSync('/proc/stat', 'utf8'));

  track(name: string, pid: number | undefined): void {
    if (pid !== undefined) this.tracked.push({ name, pid, ticksAtMark: 0, peakRss: 0 });
  }

  mark(): void {
    this.markedAt = Date.now();
    this.machineAtMark = parseMachineStat(readFileSync('/proc/stat', 'utf8'));
    for (const t of this.tracked) {
      t.ticksAtMark = readTicks(t.pid) ?? t.ticksAtMark;
      t.peakRss = readRss(t.pid) ?? 0;
    }
  }

  sample(): void {
    for (const t of this.tracked) t.peakRss = Math.max(t.peakRss, readRss(t.pid) ?? 0);
  }

  window(): { processes: ProcessUsage[]; machineBusyPercent: number } {
    this.sample();
    const elapsedMs = Date.now() - this.markedAt;
    const machine = parseMachineStat(readFileSync('/proc/stat', 'utf8'));
    const total = machine.total - this.machineAtMark.total;
    return {
      processes: this.tracked.map((t) => ({
        name: t.name,
        pid: t.pid,
        cpuPercent: cpuPercent(t.ticksAtMark, readTicks(t.pid) ?? t.ticksAtMark, elapsedMs, TICKS_PER_SECOND),
        rssMiB: t.peakRss / 2 ** 20,
      })),
      // Of all cores together (100 % = every core busy).
      machineBusyPercent: total > 0 ? ((machine.busy - this.machineAtMark.busy) / total) * 100 : 0,
    };
  }
}

function readTicks(pid: number): number | undefined {
  try {
    return parseProcStat(readFileSync(`/proc/${pid}/stat`, 'utf8')).cpuTicks;
  } catch {
    return undefined;
  }
}

function readRss(pid: number): number | undefined {
  try {
    return parseVmRss(readFileSync(`/proc/${pid}/status`, 'utf8'));
  } catch {
    return undefined;
  }
}
