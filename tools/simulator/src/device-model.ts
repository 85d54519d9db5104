import { telemetryProtoType, type DeviceChannel, type MetricValue } from '@dmp/contracts';
import { randomBytes } from 'node:crypto';

/**
 * A simulated device: a handful of metrics drifting like a real sensor's. It publishes a change event when
 * one metric changes and a snapshot of all of them periodically (the change + snapshot pattern).
 * Pure state and payload building, no I/O.
 */
export class SimulatedDevice {
  private seq = 0;
  private readonly metrics: Record<string, MetricValue>;

  constructor(
    readonly id: string,
    private readonly random: () => number = Math.random,
  ) {
    this.metrics = {
      temperature: round(18 + random() * 8, 2),
      humidity: round(35 + random() * 30, 1),
      voltage: round(3.3 + random() * 0.3, 3),
      rssi: Math.round(-90 + random() * 40),
      door_open: false,
      status: 'ok',
    };
  }

  /** One metric changes: the change event carries only it. */
  change(now: number): DeviceReading {
    const names = Object.keys(this.metrics);
    const name = names[Math.floor(this.random() * names.length)];
    this.metrics[name] = this.drift(name, this.metrics[name]);
    return this.reading('telemetry', now, { [name]: this.metrics[name] });
  }

  /** Every metric, periodically. */
  snapshot(now: number): DeviceReading {
    return this.reading('snapshot', now, { ...this.metrics });
  }

  private reading(
    channel: 'telemetry' | 'snapshot',
    ts: number,
    metrics: Record<string, MetricValue>,
  ): DeviceReading {
    const seq = ++this.seq;
    return { deviceId: this.id, channel, messageId: `${this.id}-${seq}`, seq, ts, metrics };
  }

  private drift(name: string, value: MetricValue): MetricValue {
    const r = this.random();
    switch (name) {
      case 'temperature':
        return round(clamp((value as number) + (r - 0.5) * 0.6, -20, 60), 2);
      case 'humidity':
        return round(clamp((value as number) + (r - 0.5) * 2, 0, 100), 1);
      case 'voltage':
        return round(clamp((value as number) - r * 0.002, 2.8, 3.6), 3);
      case 'rssi':
        return Math.round(clamp((value as number) + (r - 0.5) * 6, -120, -30));
      case 'door_open':
        return !(value as boolean);
      default:
        return r < 0.9 ? 'ok' : 'warn';
    }
  }
}

/** What a device publishes on `devices/{deviceId}/{channel}` (a reading; heartbeats are separate). */
export interface DeviceReading {
  deviceId: string;
  channel: Extract<DeviceChannel, 'telemetry' | 'snapshot'>;
  messageId: string;
  seq: number;
  ts: number;
  metrics: Record<string, MetricValue>;
}

export type WireFormat = 'json' | 'protobuf';
export const PROTOBUF_CONTENT_TYPE = 'application/x-protobuf';

/** Encodes readings as JSON (devicePayloadSchema) or Protobuf (`DevicePayload` of telemetry.proto). */
export class PayloadEncoder {
  private readonly devicePayload = telemetryProtoType('DevicePayload');

  encode(reading: DeviceReading, format: WireFormat): Buffer {
    const { deviceId, messageId, ts, seq, metrics } = reading;
    if (format === 'json') return Buffer.from(JSON.stringify({ deviceId, messageId, ts, seq, metrics }));
    const protoMetrics = Object.fromEntries(
      Object.entries(metrics).map(([name, v]) => [
        name,
        typeof v === 'number' ? { number: v } : typeof v === 'boolean' ? { flag: v } : { text: v },
      ]),
    );
    const message = this.devicePayload.fromObject({ deviceId, messageId, ts, seq, metrics: protoMetrics });
    return Buffer.from(this.devicePayload.encode(message).finish());
  }
}

/** A fresh sampled W3C trace context, as an instrumented device would send. */
export function newTraceparent(): string {
  return `00-${randomBytes(16).toString('hex')}-${randomBytes(8).toString('hex')}-01`;
}

/** Stable FNV-1a hash: a device always goes through the same connection (keeps its order). */
export function hashDeviceId(id: string): number {
  let hash = 0x811c9dc5;
  for (let i = 0; i < id.length; i++) {
    hash ^= id.charCodeAt(i);
    hash = Math.imul(hash, 0x01000193);
  }
  return hash >>> 0;
}

const clamp = (v: number, min: number, max: number) => Math.min(max, Math.max(min, v));
const round = (v: number, digits: number) => Math.round(v * 10 ** digits) / 10 ** digits;
