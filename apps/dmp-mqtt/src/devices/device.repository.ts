import {
  DEVICE_CHANGED_CHANNEL,
  DeviceField,
  deviceMetadataOf,
  deviceRegistryKey,
  type DeviceStatus,
} from '@dmp/contracts';
import { ChannelSubscription, REDIS_CLIENT, type SubscriptionHandlers } from '@dmp/redis';
import { Inject, Injectable } from '@nestjs/common';
import type { Redis } from 'ioredis';
import type { StoredDevice, UpdateDevice } from './device';

/**
 * Creates the hash only if it does not exist, and announces it — in one script, so a change is never
 * stored without its announcement. KEYS[1] the hash; ARGV[1] the channel, ARGV[2] the device id, then
 * field/value pairs. Returns 1 if created, 0 if the device already exists.
 */
const CREATE = `
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], unpack(ARGV, 3))
redis.call('PUBLISH', ARGV[1], ARGV[2])
return 1`;

/** Same arguments; updates fields of an existing hash only. Returns 1 if updated, 0 if there is none. */
const UPDATE = `
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], unpack(ARGV, 3))
redis.call('PUBLISH', ARGV[1], ARGV[2])
return 1`;

/** KEYS[1] the hash; ARGV[1] the channel, ARGV[2] the device id. Returns 1 if removed. */
const REMOVE = `
if redis.call('DEL', KEYS[1]) == 0 then return 0 end
redis.call('PUBLISH', ARGV[1], ARGV[2])
return 1`;

/**
 * The device registry in Redis: one hash per device (`dmp:device:{id}`, fields in @dmp/contracts
 * `DeviceField`, read by dmp-kernel too), each change published on `dmp:device-changed`.
 */
@Injectable()
export class DeviceRepository {
  private available?: Promise<void>;

  constructor(@Inject(REDIS_CLIENT) private readonly redis: Redis) {}

  /** The changes announced on `dmp:device-changed` (by any replica or the admin API): the device ids. */
  changes(handlers: SubscriptionHandlers): ChannelSubscription {
    return new ChannelSubscription(this.redis, DEVICE_CHANGED_CHANNEL, handlers, 'DeviceRegistry');
  }

  /** Resolves once Redis is reachable (at once if it is). */
  whenAvailable(): Promise<void> {
    if (this.redis.status === 'ready') return Promise.resolve();
    this.available ??= new Promise<void>((resolve) =>
      this.redis.once('ready', () => {
        this.available = undefined;
        resolve();
      }),
    );
    return this.available;
  }

  async get(deviceId: string): Promise<StoredDevice | undefined> {
    const hash = await this.redis.hgetall(deviceRegistryKey(deviceId));
    return parseStoredDevice(deviceId, hash);
  }

  /** False when the device already exists (nothing is changed then). */
  async create(device: StoredDevice): Promise<boolean> {
    const fields = toHashFields(device);
    const created = await this.redis.eval(
      CREATE,
      1,
      deviceRegistryKey(device.deviceId),
      DEVICE_CHANGED_CHANNEL,
      device.deviceId,
      ...fields,
    );
    return created === 1;
  }

  /** The device after the change, or undefined when it is not registered. */
  async update(deviceId: string, change: UpdateDevice, now = new Date()): Promise<StoredDevice | undefined> {
    const fields: string[] = [DeviceField.updatedAt, now.toISOString()];
    if (change.status !== undefined) fields.push(DeviceField.status, change.status);
    if (change.tenantId !== undefined) fields.push(DeviceField.tenantId, change.tenantId);
    if (change.productId !== undefined) fields.push(DeviceField.productId, change.productId);
    if (change.siteId !== undefined) fields.push(DeviceField.siteId, change.siteId);
    if (change.tags !== undefined) fields.push(DeviceField.tags, JSON.stringify(change.tags));
    const updated = await this.redis.eval(
      UPDATE,
      1,
      deviceRegistryKey(deviceId),
      DEVICE_CHANGED_CHANNEL,
      deviceId,
      ...fields,
    );
    return updated === 1 ? this.get(deviceId) : undefined;
  }

  /** False when there was no such device. */
  async remove(deviceId: string): Promise<boolean> {
    const removed = await this.redis.eval(
      REMOVE,
      1,
      deviceRegistryKey(deviceId),
      DEVICE_CHANGED_CHANNEL,
      deviceId,
    );
    return removed === 1;
  }
}

function toHashFields(device: StoredDevice): string[] {
  return [
    DeviceField.deviceId,
    device.deviceId,
    DeviceField.status,
    device.status,
    DeviceField.secretHash,
    device.secretHash,
    DeviceField.tenantId,
    device.tenantId,
    DeviceField.productId,
    device.productId,
    DeviceField.siteId,
    device.siteId,
    DeviceField.tags,
    JSON.stringify(device.tags),
    DeviceField.createdAt,
    device.createdAt,
    DeviceField.updatedAt,
    device.updatedAt,
  ];
}

/** A registry hash as a device; undefined when there is none (an empty HGETALL answer). */
export function parseStoredDevice(
  deviceId: string,
  hash: Readonly<Record<string, string>>,
): StoredDevice | undefined {
  if (Object.keys(hash).length === 0) return undefined;
  const status: DeviceStatus = hash[DeviceField.status] === 'enabled' ? 'enabled' : 'disabled';
  return {
    deviceId,
    status,
    secretHash: hash[DeviceField.secretHash] ?? '',
    ...deviceMetadataOf(hash),
    createdAt: hash[DeviceField.createdAt] ?? '',
    updatedAt: hash[DeviceField.updatedAt] ?? '',
  };
}
