import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { REPO_ROOT } from './app-process';
import { stack } from './stack';

/**
 * The local stack's ClickHouse cluster profile (`scripts/stack.sh up --cluster`): cluster `dmp`,
 * 2 shards × 2 replicas of 18.16, HTTP on these addresses, and ZooKeeper.
 */
export const CLUSTER_SERVERS = {
  'clickhouse-s1r1': 'http://127.0.0.1:8211',
  'clickhouse-s1r2': 'http://127.0.0.1:8212',
  'clickhouse-s2r1': 'http://127.0.0.1:8221',
  'clickhouse-s2r2': 'http://127.0.0.1:8222',
} as const;
export type ClusterServer = keyof typeof CLUSTER_SERVERS;
export const CLUSTER_NAME = 'dmp';
const CLUSTER_PROCS = ['zookeeper', ...Object.keys(CLUSTER_SERVERS)];

/** Runs scripts/stack.sh on the tests' stack and returns its output. */
export async function stackScriptOutput(...args: string[]): Promise<string> {
  const { stdout } = await promisify(execFile)(join(REPO_ROOT, 'scripts/stack.sh'), args, {
    cwd: REPO_ROOT,
    env: { ...process.env, DMP_STACK_DIR: stack.dir },
    timeout: 180_000,
  });
  return stdout;
}

/** The cluster's processes `status --cluster` reports up. */
async function runningClusterProcs(): Promise<string[]> {
  const out = await stackScriptOutput('status', '--cluster').catch(
    (error: { stdout?: string }) => error.stdout ?? '',
  );
  return out
    .split('\n')
    .map((line) => line.split(/\s+/))
    .filter(([name, state]) => CLUSTER_PROCS.includes(name) && state === 'up')
    .map(([name]) => name);
}

/**
 * Brings the cluster profile up (what is running stays as it is) and returns the processes this call
 * started, for `clusterDown` to stop again at the end of the test and no more.
 */
export async function clusterUp(): Promise<string[]> {
  const before = await runningClusterProcs();
  // ZooKeeper and the ClickHouse servers only: the profile's RocketMQ is not needed by these tests.
  await stackScriptOutput('up', ...CLUSTER_PROCS);
  return CLUSTER_PROCS.filter((p) => !before.includes(p));
}

/** Starts what a failed step left stopped, then stops what `clusterUp` started. */
export async function clusterDown(startedHere: readonly string[]): Promise<void> {
  if (startedHere.length > 0) await stackScriptOutput('down', ...[...startedHere].reverse());
}
