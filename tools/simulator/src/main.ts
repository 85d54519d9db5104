import { Command, InvalidArgumentError, Option } from 'commander';
import { CommandResponder, DEFAULT_RESPONDER } from './command-responder';
import { DeviceFleet, type FleetStats } from './device-fleet';

/** `npm run simulate -- --devices N --rate R [--duration S | --count C] …` */
function positive(name: string, integer = true) {
  return (value: string) => {
    const n = Number(value);
    if (!Number.isFinite(n) || n < 0 || (integer && !Number.isInteger(n))) {
      throw new InvalidArgumentError(
        `${name} must be a ${integer ? 'non-negative integer' : 'non-negative number'}`,
      );
    }
    return n;
  };
}
function ratio(value: string) {
  const n = Number(value);
  if (!Number.isFinite(n) || n < 0 || n > 1) throw new InvalidArgumentError('must be between 0 and 1');
  return n;
}

const program = new Command()
  .name('simulate')
  .description('Simulated IoT devices publishing change events, snapshots and heartbeats over MQTT 5 (QoS 1)')
  .requiredOption('--devices <n>', 'number of devices', positive('--devices'))
  .requiredOption('--rate <r>', 'change events per second, all devices together', positive('--rate', false))
  .addOption(
    new Option('--duration <seconds>', 'stop after this many seconds')
      .argParser(positive('--duration', false))
      .conflicts('count'),
  )
  .addOption(
    new Option('--count <c>', 'stop after this many messages (all channels)').argParser(positive('--count')),
  )
  .option('--url <url>', 'MQTT broker', 'mqtt://127.0.0.1:1883')
  .option('--connections <n>', 'MQTT connections the devices are spread over', positive('--connections'), 4)
  .option(
    '--time-compression <k>',
    'divide the 5 min snapshot and 10 min heartbeat periods by k',
    positive('--time-compression', false),
    1,
  )
  .option('--protobuf-ratio <p>', 'share of messages sent as Protobuf', ratio, 0)
  .option('--trace-ratio <p>', 'share of messages carrying a traceparent user property', ratio, 0)
  .option('--device-prefix <prefix>', 'device ids are {prefix}-{index}', 'sim')
  .option('--max-in-flight <n>', 'unacknowledged messages per connection', positive('--max-in-flight'), 1000)
  .option(
    '--command-errors <p>',
    'share of devices answering commands with an error',
    ratio,
    DEFAULT_RESPONDER.errorRatio,
  )
  .option(
    '--command-late <p>',
    'share of devices answering commands late',
    ratio,
    DEFAULT_RESPONDER.lateRatio,
  )
  .option(
    '--command-never <p>',
    'share of devices never answering commands',
    ratio,
    DEFAULT_RESPONDER.neverRatio,
  )
  .option(
    '--command-late-ms <ms>',
    'how late the late devices answer',
    positive('--command-late-ms'),
    DEFAULT_RESPONDER.lateMs,
  )
  .option('--no-commands', 'do not answer commands')
  .parse();

interface CliOptions {
  devices: number;
  rate: number;
  duration?: number;
  count?: number;
  url: string;
  connections: number;
  timeCompression: number;
  protobufRatio: number;
  traceRatio: number;
  devicePrefix: string;
  maxInFlight: number;
  commandErrors: number;
  commandLate: number;
  commandNever: number;
  commandLateMs: number;
  commands: boolean;
}

async function main(): Promise<number> {
  const o = program.opts<CliOptions>();
  if (o.devices < 1) throw new InvalidArgumentError('--devices must be at least 1');
  if (o.connections < 1) throw new InvalidArgumentError('--connections must be at least 1');
  const fleet = new DeviceFleet({
    url: o.url,
    devices: o.devices,
    rate: o.rate,
    connections: o.connections,
    timeCompression: o.timeCompression,
    protobufRatio: o.protobufRatio,
    traceRatio: o.traceRatio,
    deviceIdPrefix: o.devicePrefix,
    maxInFlightPerConnection: o.maxInFlight,
    record: false,
  });
  const stop = new AbortController();
  process.once('SIGINT', () => stop.abort());
  process.once('SIGTERM', () => stop.abort());

  await fleet.connect();
  const prefix = `${o.devicePrefix}-`;
  const responder = o.commands
    ? new CommandResponder({
        url: o.url,
        clientId: `sim-${process.pid}-commands`,
        owns: (deviceId) => deviceId.startsWith(prefix),
        errorRatio: o.commandErrors,
        lateRatio: o.commandLate,
        neverRatio: o.commandNever,
        lateMs: o.commandLateMs,
      })
    : undefined;
  await responder?.start();
  console.log(
    `simulating ${o.devices} devices on ${o.url} over ${o.connections} connection(s): ${o.rate} changes/s, ` +
      `snapshots every ${(300 / o.timeCompression).toFixed(1)} s per device` +
      (o.duration !== undefined
        ? `, for ${o.duration} s`
        : o.count !== undefined
          ? `, ${o.count} messages`
          : ', until Ctrl-C'),
  );
  let previous = { at: Date.now(), sent: 0 };
  const stats = await fleet.run({
    durationMs: o.duration === undefined ? undefined : o.duration * 1000,
    count: o.count,
    signal: stop.signal,
    onProgress: (s) => {
      const now = Date.now();
      const rate = ((s.sent - previous.sent) * 1000) / Math.max(1, now - previous.at);
      previous = { at: now, sent: s.sent };
      console.log(progressLine(s, rate) + (responder ? commandsLine(responder) : ''));
    },
  });
  await Promise.all([fleet.close(), responder?.stop()]);
  console.log(
    summary(stats) + (responder ? `\n  ${commandsLine(responder).trim() || 'commands: none received'}` : ''),
  );
  const unacknowledged = stats.sent - stats.acked;
  return unacknowledged === 0 ? 0 : 2;
}

function progressLine(s: FleetStats, rate: number): string {
  return (
    `[${(s.elapsedMs / 1000).toFixed(0).padStart(4)}s] sent ${s.sent} (${rate.toFixed(0)}/s)  acked ${s.acked}` +
    `  in flight ${s.inFlight}  queued ${s.queued}` +
    (s.failed > 0 ? `  FAILED ${s.failed}` : '') +
    (s.skipped > 0 ? `  skipped ${s.skipped}` : '')
  );
}

function commandsLine(responder: CommandResponder): string {
  const c = responder.stats;
  return c.received === 0
    ? ''
    : `  commands ${c.received} (answered ${c.replied}, repeated ${c.repeated}, unanswered ${c.ignored})`;
}

function summary(s: FleetStats): string {
  const seconds = s.elapsedMs / 1000;
  return [
    `done in ${seconds.toFixed(1)} s: sent ${s.sent} (${(s.sent / Math.max(seconds, 0.001)).toFixed(0)}/s), acked ${s.acked}, failed ${s.failed}` +
      (s.skipped > 0 ? `, skipped ${s.skipped} (broker too slow)` : ''),
    `  by channel: telemetry ${s.byChannel.telemetry}, snapshot ${s.byChannel.snapshot}, heartbeat ${s.byChannel.heartbeat}`,
    `  publish → PUBACK: p50 ${s.ackLatencyMs.p50} ms, p99 ${s.ackLatencyMs.p99} ms, max ${s.ackLatencyMs.max} ms`,
  ].join('\n');
}

main().then(
  (code) => process.exit(code),
  (error: unknown) => {
    console.error(error instanceof Error ? error.message : error);
    process.exit(1);
  },
);
