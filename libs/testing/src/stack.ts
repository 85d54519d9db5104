import {
  clickhouseSection,
  loadConfig,
  mqttSection,
  redisSection,
  rocketmqSection,
  telemetrySection,
} from '@dmp/config';
import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { z } from 'zod';
import { REPO_ROOT } from './app-process';
import { waitFor } from './wait';

/** The stack's folder (pid files, logs, data): scripts/stack.sh's DMP_STACK_DIR, by default `.stack`. */
const stackDirSection = z
  .object({ DMP_STACK_DIR: z.string().min(1).optional() })
  .transform((e) => resolve(REPO_ROOT, e.DMP_STACK_DIR ?? join(REPO_ROOT, '.stack')));

/** Where the local stack (scripts/stack.sh) listens; the same defaults the apps use. */
export const stack = {
  ...loadConfig({
    mqtt: mqttSection,
    redis: redisSection,
    rocketmq: rocketmqSection,
    clickhouse: clickhouseSection,
    telemetry: telemetrySection,
    dir: stackDirSection,
  }),
  jaegerQueryUrl: 'http://127.0.0.1:16686',
  prometheusUrl: 'http://127.0.0.1:9090',
};

export interface JaegerSpan {
  traceID: string;
  spanID: string;
  operationName: string;
  processID: string;
  references: { refType: string; traceID: string; spanID: string }[];
  tags: { key: string; value: unknown }[];
}
export interface JaegerTrace {
  traceID: string;
  spans: JaegerSpan[];
  processes: Record<string, { serviceName: string; tags?: { key: string; value: unknown }[] }>;
}

/** One trace from Jaeger's query API, or undefined while it is not (fully) there. */
export async function getJaegerTrace(traceId: string): Promise<JaegerTrace | undefined> {
  const response = await fetch(`${stack.jaegerQueryUrl}/api/traces/${traceId}`);
  if (!response.ok) return undefined;
  const body = (await response.json()) as { data?: JaegerTrace[] };
  return body.data?.[0];
}

export const servicesOf = (trace: JaegerTrace) =>
  new Set(trace.spans.map((span) => trace.processes[span.processID]?.serviceName));

/**
 * Runs scripts/stack.sh (e.g. `stackScript('down', 'mosquitto')`) on the stack the tests use, for a
 * test that stops or restarts a server; resolves with its output, rejects with it when it fails.
 */
export async function stackScript(...args: string[]): Promise<string> {
  const { stdout } = await promisify(execFile)(join(REPO_ROOT, 'scripts/stack.sh'), args, {
    cwd: REPO_ROOT,
    env: { ...process.env, DMP_STACK_DIR: stack.dir },
    timeout: 180_000,
  });
  return stdout;
}

/** Which of `procs` (names as `scripts/stack.sh status` prints them) are up. */
export async function runningStackProcs(procs: string[], ...statusArgs: string[]): Promise<string[]> {
  // status exits 3 when a process is down, with the same table on stdout
  const out = await stackScript('status', ...statusArgs).catch(
    (error: { stdout?: string }) => error.stdout ?? '',
  );
  return out
    .split('\n')
    .map((line) => line.split(/\s+/))
    .filter(([name, state]) => procs.includes(name) && state === 'up')
    .map(([name]) => name);
}

/**
 * Stops the RocketMQ proxy with its embedded broker (SIGTERM, as an operator would), leaving the name
 * server up, and starts it again.
 */
export async function restartRocketMqBroker(): Promise<void> {
  const pid = Number(readFileSync(join(stack.dir, 'run/rocketmq-proxy.pid'), 'utf8'));
  process.kill(pid, 'SIGTERM');
  await waitFor(
    `RocketMQ proxy ${pid} to exit`,
    () => {
      try {
        process.kill(pid, 0);
        return false;
      } catch {
        return true;
      }
    },
    { timeoutMs: 60_000, intervalMs: 250 },
  );
  await stackScript('up', 'rocketmq');
}
