import mqtt from 'mqtt';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { DeviceFleet } from '../../../../simulator/src/device-fleet';
import { fleetMix } from './analysis';

export interface RawMqttResult {
  offered: number;
  sent: number;
  acked: number;
  received: number;
  /** Messages received per second, from the first publish to the last message received. */
  receivedPerSecond: number;
  ackedPerSecond: number;
  lost: number;
}

/**
 * Broker pass-through without the pipeline: the simulator's fleet (same devices, same payloads and mix)
 * publishes QoS 1 to `bench/{run}/…` — a tree no dmp-mqtt subscribes to — and one MQTT 5 subscriber with
 * dmp-mqtt's Receive Maximum takes it all at QoS 1. Both run in the bench process, like the chain's
 * publisher does.
 */
export async function rawMqttPassThrough({
  url,
  run,
  devices,
  offered,
  durationMs,
  receiveMaximum = 2_000,
}: {
  url: string;
  run: string;
  devices: number;
  offered: number;
  durationMs: number;
  receiveMaximum?: number;
}): Promise<RawMqttResult> {
  const root = `bench/${run}`;
  const subscriber = await mqtt.connectAsync(url, {
    protocolVersion: 5,
    clientId: `bench-${run}-raw-sub`,
    clean: true,
    properties: { receiveMaximum },
    reconnectPeriod: 0,
  });
  let received = 0;
  let lastReceivedAt = 0;
  subscriber.on('message', () => {
    received++;
    lastReceivedAt = performance.now();
  });
  await subscriber.subscribeAsync(`${root}/#`, { qos: 1 });

  const mix = fleetMix(offered, devices);
  const fleet = new DeviceFleet({
    url,
    devices,
    rate: mix.changesPerSecond,
    timeCompression: mix.timeCompression,
    heartbeatIntervalMs: 0,
    deviceIdPrefix: `raw${run}`,
    clientIdPrefix: `bench-${run}-raw-pub`,
    record: false,
    topic: (deviceId, channel) => `${root}/${deviceId}/${channel}`,
  });
  await fleet.connect();
  const started = performance.now();
  const stats = await fleet.run({ durationMs, flushTimeoutMs: 60_000 });
  const publishedMs = performance.now() - started;
  // What the broker still holds for the subscriber arrives now; stop once nothing more comes.
  for (let last = -1; received !== last;) {
    last = received;
    await sleep(1_000);
  }
  const seconds = publishedMs / 1000;
  const receivingSeconds = Math.max(lastReceivedAt - started, 1) / 1000;
  await fleet.close();
  await subscriber.endAsync();
  return {
    offered,
    sent: stats.sent,
    acked: stats.acked,
    received,
    receivedPerSecond: received / receivingSeconds,
    ackedPerSecond: stats.acked / seconds,
    lost: stats.sent - received,
  };
}
