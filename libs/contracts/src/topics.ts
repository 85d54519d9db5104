import { DEVICE_ID_PATTERN, telemetryKinds, type TelemetryKind } from './telemetry';

/** Device topics: `devices/{deviceId}/{channel}`. */
export const deviceChannels = [...telemetryKinds, 'heartbeat'] as const;
export type DeviceChannel = (typeof deviceChannels)[number];

export interface DeviceTopic {
  deviceId: string;
  channel: DeviceChannel;
}

export function parseDeviceTopic(topic: string): DeviceTopic | undefined {
  const parts = topic.split('/');
  if (parts.length !== 3 || parts[0] !== 'devices') return undefined;
  const [, deviceId, channel] = parts;
  if (!DEVICE_ID_PATTERN.test(deviceId)) return undefined;
  if (!(deviceChannels as readonly string[]).includes(channel)) return undefined;
  return { deviceId: deviceId, channel: channel as DeviceChannel };
}

export const deviceTopic = (deviceId: string, channel: DeviceChannel) => `devices/${deviceId}/${channel}`;
export const deviceCommandTopic = (deviceId: string) => `devices/${deviceId}/command`;

export const isTelemetryKind = (channel: DeviceChannel): channel is TelemetryKind => channel !== 'heartbeat';
