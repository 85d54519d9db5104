import { spawn, type ChildProcess } from 'node:child_process';
import { createWriteStream, mkdirSync } from 'node:fs';
import { createServer } from 'node:net';
import { join, resolve } from 'node:path';
import { waitFor } from './wait';

export const REPO_ROOT = resolve(__dirname, '../../../..');
export const TEST_LOG_DIR = join(REPO_ROOT, '.stack', 'logs', 'tests');

export type AppName = 'dmp-mqtt' | 'dmp-kernel' | 'dmp-data';

export interface RunningApp {
  name: AppName;
  baseUrl: string;
  process: ChildProcess;
  /** SIGTERM (graceful drain) by default; resolves with the exit code. */
  stop(signal?: NodeJS.Signals): Promise<number | null>;
}

/** A free TCP port on 127.0.0.1. */
export function freePort(): Promise<number> {
  return new Promise((resolvePort, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      server.close(() =>
        typeof address === 'object' && address ? resolvePort(address.port) : reject(new Error('no port')),
      );
    });
  });
}

/**
 * Starts a built app (`dist/apps/<name>/src/main.js`) as a real process with the given environment,
 * logs to `.stack/logs/tests/<label>.log`, and waits until its `/health` answers 200.
 */
export async function startApp(
  name: AppName,
  env: Record<string, string>,
  { label = name, healthTimeoutMs = 60_000 }: { label?: string; healthTimeoutMs?: number } = {},
): Promise<RunningApp> {
  const port = env.HTTP_PORT ?? String(await freePort());
  mkdirSync(TEST_LOG_DIR, { recursive: true });
  const log = createWriteStream(join(TEST_LOG_DIR, `${label}.log`), { flags: 'a' });
  const child = spawn(
    process.execPath,
    ['--enable-source-maps', join(REPO_ROOT, 'dist/apps', name, 'src/main.js')],
    {
      cwd: REPO_ROOT,
      env: { ...process.env, ...env, HTTP_PORT: port },
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
  child.stdout.pipe(log);
  child.stderr.pipe(log);
  // 'close' (not 'exit'): the child's output is fully written to the log by then.
  const exited = new Promise<number | null>((done) => child.once('close', (code) => done(code)));
  const baseUrl = `http://127.0.0.1:${port}`;
  let exitCode: number | null | undefined;
  void exited.then((code) => (exitCode = code));

  await waitFor(
    `${label} /health on ${baseUrl}`,
    async () => {
      if (exitCode !== undefined)
        throw new Error(`${label} exited with ${exitCode}; see ${TEST_LOG_DIR}/${label}.log`);
      const response = await fetch(`${baseUrl}/health`);
      return response.ok;
    },
    { timeoutMs: healthTimeoutMs, intervalMs: 300 },
  );

  return {
    name,
    baseUrl,
    process: child,
    async stop(signal: NodeJS.Signals = 'SIGTERM') {
      if (exitCode === undefined) child.kill(signal);
      const code = await exited;
      log.end();
      return code;
    },
  };
}

/** Reads one sample (summed over label sets matching `labels`) from an app's /metrics. */
export async function readMetric(
  baseUrl: string,
  name: string,
  labels: Record<string, string> = {},
): Promise<number> {
  return metricSum(await (await fetch(`${baseUrl}/metrics`)).text(), name, labels);
}

/** Sum of one metric's samples (all label sets containing `labels`) in a Prometheus text exposition. */
export function metricSum(text: string, name: string, labels: Record<string, string> = {}): number {
  let sum = 0;
  for (const line of text.split('\n')) {
    if (!line.startsWith(name)) continue;
    const match = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)/.exec(line);
    if (!match || match[1] !== name) continue;
    const labelText = match[2] ?? '';
    if (Object.entries(labels).every(([k, v]) => labelText.includes(`${k}="${v}"`))) sum += Number(match[3]);
  }
  return sum;
}

/**
 * dmp-mqtt serving only its HTTP endpoints (admin API, EMQX's authn/authz): it subscribes to a topic of
 * its own, leaves no session on the shared broker and has no kernel to hand off to. `prefix` names its
 * share group too, so it must be one (dmp-mqtt's config refuses anything else at start-up).
 */
export async function startAuthOnlyMqtt(
  prefix: string,
  secrets: {
    adminToken: string;
    authSecret: string;
    service: { username: string; password: string };
  },
  env: Record<string, string> = {},
): Promise<RunningApp> {
  return startApp(
    'dmp-mqtt',
    {
      MQTT_SHARE_GROUP: prefix,
      MQTT_CLIENT_ID: prefix,
      MQTT_TOPICS: `${prefix}/none`,
      MQTT_SESSION_EXPIRY_SECONDS: '0',
      KERNEL_GRPC_URL: `127.0.0.1:${await freePort()}`,
      ADMIN_TOKEN: secrets.adminToken,
      MQTT_AUTH_HTTP_SECRET: secrets.authSecret,
      MQTT_SERVICE_USERNAME: secrets.service.username,
      MQTT_SERVICE_PASSWORD: secrets.service.password,
      OTEL_ENABLED: 'false',
      LOG_LEVEL: 'warn',
      ...env,
    },
    { label: `${prefix}-dmp-mqtt` },
  );
}

/**
 * Starts several apps side by side ({@link startApp} each), for apps whose start-up does not depend on
 * one another (dmp-mqtt's /health, for one, does not wait for dmp-kernel). Resolves in the order
 * given; when one fails, stops those that started and rejects with its error.
 */
export async function startApps(
  specs: readonly (readonly [AppName, Record<string, string>, Parameters<typeof startApp>[2]?])[],
): Promise<RunningApp[]> {
  const results = await Promise.allSettled(specs.map(([name, env, options]) => startApp(name, env, options)));
  const failure = results.find((result) => result.status === 'rejected');
  if (!failure) return results.map((result) => (result as PromiseFulfilledResult<RunningApp>).value);
  await Promise.all(
    results.flatMap((result) => (result.status === 'fulfilled' ? [result.value.stop()] : [])),
  );
  throw failure.reason;
}
