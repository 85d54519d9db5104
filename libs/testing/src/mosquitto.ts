import { spawn, type ChildProcess } from 'node:child_process';
import { createWriteStream, mkdirSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import mqtt from 'mqtt';
import { freePort, TEST_LOG_DIR } from './app-process';
import { waitFor } from './wait';

/** A Mosquitto of a test's own, beside the stack's: e.g. a second independent broker. */
export interface ExtraMosquitto {
  url: string;
  port: number;
  /** Starts the process (again, on the same port and data: sessions and queued messages survive). */
  start(): Promise<void>;
  /** SIGTERM (Mosquitto saves its sessions), resolves once the process is gone. */
  stop(): Promise<void>;
}

/**
 * Configures a Mosquitto like the stack's (scripts/stack/mosquitto.conf: persistence, no in-flight or
 * queue limits) on a free loopback port, with its data in `dir`; `start()` runs it as a native process
 * (the binary `scripts/stack.sh up` installs) and waits until it answers MQTT.
 */
export async function extraMosquitto(label: string, dir: string): Promise<ExtraMosquitto> {
  const port = await freePort();
  const url = `mqtt://127.0.0.1:${port}`;
  const conf = join(dir, 'mosquitto.conf');
  mkdirSync(join(dir, 'data'), { recursive: true });
  await writeFile(
    conf,
    [
      `listener ${port} 127.0.0.1`,
      'allow_anonymous true',
      'persistence true',
      `persistence_location ${join(dir, 'data')}/`,
      'autosave_interval 1',
      'max_inflight_messages 0',
      'max_inflight_bytes 0',
      'max_queued_messages 1000000',
      'max_queued_bytes 0',
      'queue_qos0_messages false',
      'log_dest stdout',
      'log_type error',
      'log_type warning',
      'log_type notice',
      'connection_messages true',
      '',
    ].join('\n'),
  );
  mkdirSync(TEST_LOG_DIR, { recursive: true });
  const log = createWriteStream(join(TEST_LOG_DIR, `${label}.log`), { flags: 'a' });
  let child: ChildProcess | undefined;
  let exited: Promise<void> = Promise.resolve();

  return {
    url,
    port,
    async start() {
      const process = spawn('mosquitto', ['-c', conf], { stdio: ['ignore', 'pipe', 'pipe'] });
      child = process;
      process.stdout.pipe(log, { end: false });
      process.stderr.pipe(log, { end: false });
      let code: number | null | undefined;
      exited = new Promise((done) =>
        process.once('close', (exitCode) => {
          code = exitCode;
          done();
        }),
      );
      await waitFor(`Mosquitto ${label} on ${url}`, async () => {
        if (code !== undefined) throw new Error(`mosquitto exited with ${code}; see ${label}.log`);
        const probe = await mqtt.connectAsync(url, { reconnectPeriod: 0, connectTimeout: 1_000 });
        await probe.endAsync();
        return true;
      });
    },
    async stop() {
      if (child && child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
      await exited;
      child = undefined;
    },
  };
}
