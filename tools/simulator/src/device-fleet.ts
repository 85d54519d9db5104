import { deviceTopic, type DeviceChannel } from '@dmp/contracts';
import { backoffDelay, type BackoffOptions } from '@dmp/flow';
import mqtt, { type IClientPublishOptions, type MqttClient } from 'mqtt';
import { setTimeout as sleep } from 'node:timers/promises';
import {
  hashDeviceId,
  newTraceparent,
  PayloadEncoder,
  PROTOBUF_CONTENT_TYPE,
  SimulatedDevice,
  type DeviceReading,
  type WireFormat,
} from './device-model';

/**
 * A fleet of simulated devices publishing over a few MQTT 5 connections (QoS 1): change events at an
 * aggregate rate, a snapshot per device every 5 minutes (divided by the time compression) spread evenly
 * over the period, and occasional heartbeats. Each device is hashed to one connection, so its messages
 * keep their order; a connection keeps at most Receive Maximum (the broker's) messages unacknowledged and
 * queues the rest in order. Everything sent is recorded per device (the ledger), so tests and benchmarks
 * know exactly what should come out at the other end.
 */
export interface FleetOptions {
  url: string;
  devices: number;
  /** Change events per second, all devices together. */
  rate: number;
  connections?: number;
  /** Divides the snapshot and heartbeat periods, so a short run sees them. */
  timeCompression?: number;
  snapshotIntervalMs?: number;
  /** 0 = no heartbeats. */
  heartbeatIntervalMs?: number;
  /** Share of messages sent as Protobuf (content type application/x-protobuf), the rest as JSON. */
  protobufRatio?: number;
  /** Share of messages carrying a W3C `traceparent` MQTT 5 user property. */
  traceRatio?: number;
  /** Device ids are `{prefix}-{index}`. */
  deviceIdPrefix?: string;
  clientIdPrefix?: string;
  /** Cap on unacknowledged messages per connection (the broker's Receive Maximum caps it too). */
  maxInFlightPerConnection?: number;
  /** Generation pauses while this many messages wait for a free window (broker too slow). */
  maxQueued?: number;
  /** Keep the ledger of sent messages (memory grows with the run). */
  record?: boolean;
  /** Called for every message as it is published (e.g. to sample messages without keeping a ledger). */
  onPublish?: (sent: SentMessage) => void;
  /** Where a device publishes (default `devices/{deviceId}/{channel}`, what dmp-mqtt subscribes to). */
  topic?: (deviceId: string, channel: DeviceChannel) => string;
  username?: string;
  password?: string;
  /**
   * A PUBACK with reason 0x10 (No matching subscribers) means nobody took the message — no dmp-mqtt
   * was subscribed, as after a broker restart until it is back: resent after these delays, as
   * docs/devices.md asks of devices, until `maxAttempts` (then it counts as failed). 0 attempts: never.
   */
  resendUnrouted?: BackoffOptions & { maxAttempts: number };
}

export interface SentMessage {
  deviceId: string;
  channel: DeviceChannel;
  /** Heartbeats have none: they are not forwarded. */
  messageId?: string;
  seq?: number;
  format: WireFormat;
  traceparent?: string;
  topic: string;
  sentAt: number;
  ackedAt?: number;
  /** Why the broker refused it (PUBACK reason code ≥ 0x80, or 0x10 too often), if it did. */
  error?: string;
  /** Times it was published again after a PUBACK 0x10 (No matching subscribers). */
  resent?: number;
}

export interface FleetStats {
  elapsedMs: number;
  sent: number;
  acked: number;
  failed: number;
  /** Publications repeated after a PUBACK 0x10 (No matching subscribers). */
  resent: number;
  inFlight: number;
  queued: number;
  /** Messages the schedule asked for but not generated because the broker could not keep up. */
  skipped: number;
  byChannel: Record<'telemetry' | 'snapshot' | 'heartbeat', number>;
  /** Publish → PUBACK, milliseconds. */
  ackLatencyMs: { p50: number; p99: number; max: number };
}

export interface RunOptions {
  durationMs?: number;
  /** Stop after this many messages (all channels). */
  count?: number;
  signal?: AbortSignal;
  onProgress?: (stats: FleetStats) => void;
  progressIntervalMs?: number;
  /** How long to wait for outstanding acknowledgements at the end. */
  flushTimeoutMs?: number;
}

const DEFAULTS = {
  connections: 4,
  timeCompression: 1,
  snapshotIntervalMs: 5 * 60_000,
  heartbeatIntervalMs: 10 * 60_000,
  protobufRatio: 0,
  traceRatio: 0,
  deviceIdPrefix: 'sim',
  maxInFlightPerConnection: 1_000,
  maxQueued: 100_000,
  record: true,
  topic: deviceTopic,
  resendUnrouted: { baseMs: 250, maxMs: 5_000, jitter: 0.2, maxAttempts: 30 },
};

export class DeviceFleet {
  readonly devices: SimulatedDevice[];
  /** Per device, in publish order. */
  readonly ledger = new Map<string, SentMessage[]>();
  private readonly options: Required<
    Omit<FleetOptions, 'username' | 'password' | 'clientIdPrefix' | 'onPublish'>
  > &
    Pick<FleetOptions, 'username' | 'password' | 'clientIdPrefix' | 'onPublish'>;
  private readonly encoder = new PayloadEncoder();
  private connections: PublisherConnection[] = [];
  private readonly counters = {
    sent: 0,
    acked: 0,
    failed: 0,
    resent: 0,
    skipped: 0,
    telemetry: 0,
    snapshot: 0,
    heartbeat: 0,
  };
  private readonly latencies = new LatencyReservoir(20_000);
  private startedAt = Date.now();

  constructor(options: FleetOptions) {
    this.options = {
      ...DEFAULTS,
      ...stripUndefined(options),
      url: options.url,
      devices: options.devices,
      rate: options.rate,
    };
    const width = String(Math.max(0, options.devices - 1)).length;
    this.devices = Array.from(
      { length: options.devices },
      (_, i) => new SimulatedDevice(`${this.options.deviceIdPrefix}-${String(i).padStart(width, '0')}`),
    );
  }

  async connect(): Promise<void> {
    const prefix = this.options.clientIdPrefix ?? `sim-${process.pid}-${Date.now().toString(36)}`;
    this.connections = await Promise.all(
      Array.from({ length: this.options.connections }, (_, i) =>
        PublisherConnection.open(this.options.url, {
          clientId: `${prefix}-${i}`,
          username: this.options.username,
          password: this.options.password,
          maxInFlight: this.options.maxInFlightPerConnection,
        }),
      ),
    );
    this.startedAt = Date.now();
  }

  /** Publishes on schedule until the duration or count is reached (or the signal aborts), then flushes. */
  async run(run: RunOptions = {}): Promise<FleetStats> {
    const { rate, devices } = this.options;
    const n = devices;
    const compression = this.options.timeCompression;
    const snapshotPeriod = this.options.snapshotIntervalMs / compression;
    const heartbeatPeriod = this.options.heartbeatIntervalMs / compression;
    const start = Date.now();
    this.startedAt = start;
    const emitted = { changes: 0, snapshots: 0, heartbeats: 0 };
    const limitReached = () => run.count !== undefined && this.counters.sent >= run.count;
    let lastProgress = start;

    while (!run.signal?.aborted && !limitReached()) {
      const now = Date.now();
      const elapsed = now - start;
      if (run.durationMs !== undefined && elapsed >= run.durationMs) break;
      const due = {
        changes: Math.floor((elapsed * rate) / 1000) - emitted.changes,
        snapshots:
          n > 0 && snapshotPeriod > 0 ? Math.floor((elapsed * n) / snapshotPeriod) - emitted.snapshots : 0,
        heartbeats:
          n > 0 && heartbeatPeriod > 0 ? Math.floor((elapsed * n) / heartbeatPeriod) - emitted.heartbeats : 0,
      };
      if (this.queued() > this.options.maxQueued) {
        // The broker is not keeping up: do not pile up messages in memory; report them as skipped.
        this.counters.skipped += due.changes + due.snapshots + due.heartbeats;
        emitted.changes += due.changes;
        emitted.snapshots += due.snapshots;
        emitted.heartbeats += due.heartbeats;
      } else {
        for (; due.snapshots > 0 && !limitReached(); due.snapshots--) {
          this.publishSnapshot(this.devices[emitted.snapshots++ % n]);
        }
        for (; due.heartbeats > 0 && !limitReached(); due.heartbeats--) {
          // Offset by half the fleet so heartbeats and snapshots of a device do not coincide.
          this.publishHeartbeat(this.devices[(emitted.heartbeats++ + Math.floor(n / 2)) % n]);
        }
        for (; due.changes > 0 && !limitReached(); due.changes--) {
          emitted.changes++;
          this.publishChange(this.devices[Math.floor(Math.random() * n)]);
        }
      }
      if (run.onProgress && now - lastProgress >= (run.progressIntervalMs ?? 1_000)) {
        lastProgress = now;
        run.onProgress(this.stats());
      }
      await sleep(5);
    }
    await this.flush(run.flushTimeoutMs ?? 30_000);
    return this.stats();
  }

  publishChange(device: SimulatedDevice): SentMessage {
    return this.publishReading(device.change(Date.now()));
  }

  publishSnapshot(device: SimulatedDevice): SentMessage {
    return this.publishReading(device.snapshot(Date.now()));
  }

  publishHeartbeat(device: SimulatedDevice): SentMessage {
    const format: WireFormat = 'json';
    return this.publish(device.id, 'heartbeat', Buffer.from(JSON.stringify({ ts: Date.now() })), format, {});
  }

  private publishReading(reading: DeviceReading): SentMessage {
    const format: WireFormat = Math.random() < this.options.protobufRatio ? 'protobuf' : 'json';
    return this.publish(reading.deviceId, reading.channel, this.encoder.encode(reading, format), format, {
      messageId: reading.messageId,
      seq: reading.seq,
    });
  }

  private publish(
    deviceId: string,
    channel: DeviceChannel,
    payload: Buffer,
    format: WireFormat,
    ids: { messageId?: string; seq?: number },
  ): SentMessage {
    const traceparent = Math.random() < this.options.traceRatio ? newTraceparent() : undefined;
    const topic = this.options.topic(deviceId, channel);
    const sent: SentMessage = { deviceId, channel, ...ids, format, traceparent, topic, sentAt: Date.now() };
    if (this.options.record) {
      const list = this.ledger.get(deviceId);
      if (list) list.push(sent);
      else this.ledger.set(deviceId, [sent]);
    }
    this.options.onPublish?.(sent);
    const properties: IClientPublishOptions['properties'] = {};
    if (format === 'protobuf') properties.contentType = PROTOBUF_CONTENT_TYPE;
    if (traceparent) properties.userProperties = { traceparent };
    const connection = this.connections[hashDeviceId(deviceId) % this.connections.length];
    if (!connection) throw new Error('DeviceFleet.connect() first');
    this.counters.sent++;
    this.counters[channel === 'event' ? 'telemetry' : channel]++;
    const resend = this.options.resendUnrouted;
    const attempt = (): void =>
      connection.publish(topic, payload, properties, (outcome) => {
        const now = Date.now();
        if (outcome === UNROUTED && (sent.resent ?? 0) < resend.maxAttempts) {
          sent.resent = (sent.resent ?? 0) + 1;
          this.counters.resent++;
          setTimeout(attempt, backoffDelay(sent.resent, resend)).unref();
          return;
        }
        sent.ackedAt = now;
        this.latencies.add(now - sent.sentAt);
        if (outcome) {
          sent.error = outcome === UNROUTED ? 'no matching subscribers (PUBACK 0x10)' : outcome.message;
          this.counters.failed++;
        } else this.counters.acked++;
      });
    attempt();
    return sent;
  }

  /** Waits until every published message is acknowledged by the broker (or the timeout). */
  async flush(timeoutMs = 30_000): Promise<boolean> {
    const deadline = Date.now() + timeoutMs;
    while (this.counters.acked + this.counters.failed < this.counters.sent) {
      if (Date.now() > deadline) return false;
      await sleep(10);
    }
    return true;
  }

  stats(): FleetStats {
    const { sent, acked, failed, resent, skipped, telemetry, snapshot, heartbeat } = this.counters;
    return {
      elapsedMs: Date.now() - this.startedAt,
      sent,
      acked,
      failed,
      resent,
      inFlight: this.connections.reduce((sum, c) => sum + c.inFlight, 0),
      queued: this.queued(),
      skipped,
      byChannel: { telemetry, snapshot, heartbeat },
      ackLatencyMs: this.latencies.summary(),
    };
  }

  /** Messages that should reach dmp-kernel (everything but heartbeats), per device, in order. */
  forwardable(): Map<string, SentMessage[]> {
    const result = new Map<string, SentMessage[]>();
    for (const [deviceId, messages] of this.ledger) {
      const readings = messages.filter((m) => m.channel !== 'heartbeat');
      if (readings.length > 0) result.set(deviceId, readings);
    }
    return result;
  }

  async close(): Promise<void> {
    await Promise.all(this.connections.map((c) => c.close()));
    this.connections = [];
  }

  private queued(): number {
    return this.connections.reduce((sum, c) => sum + c.queued, 0);
  }
}

/** PUBACK reason 0x10: the broker took the message but had no subscriber to give it to. */
const NO_MATCHING_SUBSCRIBERS = 0x10;
const UNROUTED = Symbol('PUBACK 0x10');
/** Nothing: acknowledged; an Error: refused (reason code ≥ 0x80); UNROUTED: nobody subscribed. */
type AckCallback = (outcome?: Error | typeof UNROUTED) => void;

/** One MQTT connection with an in-order local queue in front of the broker's Receive Maximum window. */
class PublisherConnection {
  inFlight = 0;
  private readonly queue: {
    topic: string;
    payload: Buffer;
    properties: IClientPublishOptions['properties'];
    done: AckCallback;
  }[] = [];
  private head = 0;
  /** Packet ids whose PUBACK said 0x10 (mqtt.js reports it as success, before the publish callback). */
  private readonly unrouted = new Set<number>();

  private constructor(
    private readonly client: MqttClient,
    private readonly window: number,
  ) {
    client.on('packetreceive', (packet) => {
      if (packet.cmd === 'puback' && packet.reasonCode === NO_MATCHING_SUBSCRIBERS)
        this.unrouted.add(packet.messageId!);
    });
  }

  static async open(
    url: string,
    options: { clientId: string; username?: string; password?: string; maxInFlight: number },
  ): Promise<PublisherConnection> {
    const client = mqtt.connect(url, {
      protocolVersion: 5,
      clientId: options.clientId,
      clean: true,
      username: options.username,
      password: options.password,
      reconnectPeriod: 1_000,
    });
    const connack = await new Promise<{ properties?: { receiveMaximum?: number } }>((resolve, reject) => {
      client.once('connect', resolve);
      client.once('error', reject);
    });
    // After the first connection mqtt.js reconnects by itself; an 'error' without a listener would crash.
    let lastError = '';
    client.on('error', (error) => {
      if (error.message !== lastError) console.error(`${options.clientId}: ${error.message}`);
      lastError = error.message;
    });
    client.on('connect', () => (lastError = ''));
    const brokerWindow = connack.properties?.receiveMaximum ?? 65_535;
    return new PublisherConnection(client, Math.max(1, Math.min(options.maxInFlight, brokerWindow)));
  }

  get queued(): number {
    return this.queue.length - this.head;
  }

  publish(
    topic: string,
    payload: Buffer,
    properties: IClientPublishOptions['properties'],
    done: AckCallback,
  ): void {
    this.queue.push({ topic, payload, properties, done });
    this.pump();
  }

  private pump(): void {
    while (this.inFlight < this.window && this.head < this.queue.length) {
      const next = this.queue[this.head];
      this.queue[this.head++] = undefined as never;
      this.inFlight++;
      this.client.publish(
        next.topic,
        next.payload,
        { qos: 1, properties: next.properties },
        (error, packet) => {
          this.inFlight--;
          const id = packet?.messageId;
          const unrouted = !error && id !== undefined && this.unrouted.delete(id);
          next.done(error ?? (unrouted ? UNROUTED : undefined));
          this.pump();
        },
      );
    }
    if (this.head > 10_000 && this.head * 2 > this.queue.length) {
      this.queue.splice(0, this.head);
      this.head = 0;
    }
  }

  async close(): Promise<void> {
    await this.client.endAsync();
  }
}

/** Keeps a uniform sample of latencies for percentiles. */
class LatencyReservoir {
  private readonly sample: number[] = [];
  private seen = 0;
  private max = 0;

  constructor(private readonly size: number) {}

  add(value: number): void {
    this.seen++;
    this.max = Math.max(this.max, value);
    if (this.sample.length < this.size) this.sample.push(value);
    else {
      const i = Math.floor(Math.random() * this.seen);
      if (i < this.size) this.sample[i] = value;
    }
  }

  summary(): { p50: number; p99: number; max: number } {
    if (this.sample.length === 0) return { p50: 0, p99: 0, max: 0 };
    const sorted = [...this.sample].sort((a, b) => a - b);
    const at = (q: number) => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))];
    return { p50: at(0.5), p99: at(0.99), max: this.max };
  }
}

function stripUndefined<T extends object>(value: T): Partial<T> {
  return Object.fromEntries(Object.entries(value).filter(([, v]) => v !== undefined)) as Partial<T>;
}
