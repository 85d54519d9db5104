import { devicePayloadSchema, TELEMETRY_PROTO_PACKAGE, TELEMETRY_PROTO_PATH } from '@dmp/contracts';
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import protobuf from 'protobufjs';
import { hashDeviceId, newTraceparent, PayloadEncoder, SimulatedDevice } from './device-model';

describe('SimulatedDevice', () => {
  it('publishes change events of one metric and full snapshots, with increasing seq and unique message ids', () => {
    const device = new SimulatedDevice('dev-7');
    const readings = [device.change(1), device.snapshot(2), device.change(3), device.change(4)];
    assert.deepEqual(
      readings.map((r) => [r.channel, r.seq, r.messageId]),
      [
        ['telemetry', 1, 'dev-7-1'],
        ['snapshot', 2, 'dev-7-2'],
        ['telemetry', 3, 'dev-7-3'],
        ['telemetry', 4, 'dev-7-4'],
      ],
    );
    assert.equal(Object.keys(readings[0].metrics).length, 1);
    assert.deepEqual(Object.keys(readings[1].metrics).sort(), [
      'door_open',
      'humidity',
      'rssi',
      'status',
      'temperature',
      'voltage',
    ]);
  });

  it('keeps metrics plausible while they drift', () => {
    const device = new SimulatedDevice('d');
    for (let i = 0; i < 5_000; i++) device.change(i + 1);
    const { metrics } = device.snapshot(10_000);
    assert.ok((metrics.humidity as number) >= 0 && (metrics.humidity as number) <= 100);
    assert.ok((metrics.voltage as number) >= 2.8 && (metrics.voltage as number) <= 3.6);
    assert.equal(typeof metrics.door_open, 'boolean');
  });
});

describe('PayloadEncoder', () => {
  const encoder = new PayloadEncoder();
  const reading = new SimulatedDevice('dev-1').snapshot(1_700_000_000_000);

  it('encodes JSON that satisfies the device payload schema', () => {
    const parsed = devicePayloadSchema.parse(JSON.parse(encoder.encode(reading, 'json').toString()));
    assert.equal(parsed.deviceId, 'dev-1');
    assert.deepEqual(parsed.metrics, reading.metrics);
  });

  it('encodes a Protobuf DevicePayload with every metric type', () => {
    const type = protobuf
      .loadSync(TELEMETRY_PROTO_PATH)
      .lookupType(`${TELEMETRY_PROTO_PACKAGE}.DevicePayload`);
    const decoded = type.toObject(type.decode(encoder.encode(reading, 'protobuf')), { longs: Number }) as {
      messageId: string;
      ts: number;
      metrics: Record<string, { number?: number; flag?: boolean; text?: string }>;
    };
    assert.equal(decoded.messageId, reading.messageId);
    assert.equal(decoded.ts, 1_700_000_000_000);
    assert.equal(decoded.metrics.temperature?.number, reading.metrics.temperature);
    assert.equal(decoded.metrics.door_open?.flag ?? false, reading.metrics.door_open);
    assert.equal(decoded.metrics.status?.text, 'ok');
  });
});

describe('helpers', () => {
  it('hashes a device id to the same connection every time, spreading devices over connections', () => {
    assert.equal(hashDeviceId('dev-1') % 4, hashDeviceId('dev-1') % 4);
    const perConnection = [0, 0, 0, 0];
    for (let i = 0; i < 4_000; i++) perConnection[hashDeviceId(`sim-${i}`) % 4]++;
    for (const n of perConnection) assert.ok(n > 800 && n < 1_200, perConnection.join(','));
  });

  it('makes sampled W3C trace contexts', () => {
    assert.match(newTraceparent(), /^00-[0-9a-f]{32}-[0-9a-f]{16}-01$/);
  });
});
