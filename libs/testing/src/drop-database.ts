import { spawn } from 'node:child_process';
import { stack } from './stack';

/** What the detached process runs: the DROP, retried while the server is busy, for up to 10 minutes. */
const DROP_SCRIPT = `
const [url, user, sql] = process.argv.slice(1);
const password = process.env.CLICKHOUSE_PASSWORD ?? '';
const deadline = Date.now() + 600_000;
(async () => {
  while (Date.now() < deadline) {
    try {
      const response = await fetch(url, {
        method: 'POST',
        headers: { authorization: 'Basic ' + Buffer.from(user + ':' + password).toString('base64') },
        body: sql,
      });
      await response.text();
      if (response.ok) return;
    } catch {}
    await new Promise((resolve) => setTimeout(resolve, 5_000));
  }
})();
`;

/**
 * Drops a test's ClickHouse database without waiting for it. DROP DATABASE waits for the server's
 * merges and locks on the database's tables: tens of seconds on a busy machine, every one of them
 * spent in the test's `after` hook although nothing depends on it (each run has a database of its
 * own). A detached process sends the DROP (`… ON CLUSTER name` with `cluster`) and outlives the test
 * process; the next test file starts meanwhile.
 */
export function dropDatabaseInBackground(
  database: string,
  { cluster, url = stack.clickhouse.url }: { cluster?: string; url?: string } = {},
): void {
  if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(database) || (cluster && !/^[A-Za-z_][A-Za-z0-9_]*$/.test(cluster)))
    throw new Error(`not a plain database or cluster name: ${database} ${cluster ?? ''}`);
  const sql = `DROP DATABASE IF EXISTS ${database}${cluster ? ` ON CLUSTER ${cluster}` : ''}`;
  const child = spawn(
    process.execPath,
    ['-e', DROP_SCRIPT, url, stack.clickhouse.username, sql],
    // The password in the environment, not on the command line (`ps` shows that to everyone).
    { detached: true, stdio: 'ignore', env: { CLICKHOUSE_PASSWORD: stack.clickhouse.password } },
  );
  child.unref();
}
