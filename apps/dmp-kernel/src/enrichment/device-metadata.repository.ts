import {
  DEVICE_CHANGED_CHANNEL,
  DeviceField,
  deviceMetadataOf,
  deviceRegistryKey,
  type DeviceMetadata,
} from '@dmp/contracts';
import { ChannelSubscription, REDIS_CLIENT, type SubscriptionHandlers } from '@dmp/redis';
import { Inject, Injectable } from '@nestjs/common';
import type { Redis } from 'ioredis';

const FIELDS = [
  DeviceField.tenantId,
  DeviceField.productId,
  DeviceField.siteId,
  DeviceField.tags,
  DeviceField.status,
];

/**
 * Reads device metadata from the registry hashes dmp-mqtt writes (`dmp:device:{id}`): one pipelined
 * HMGET per device, all devices of a batch in one round trip. Read-only: dmp-mqtt owns the registry.
 */
@Injectable()
export class DeviceMetadataRepository {
  constructor(@Inject(REDIS_CLIENT) private readonly redis: Redis) {}

  /** The changes dmp-mqtt announces on `dmp:device-changed`: the device ids. */
  changes(handlers: SubscriptionHandlers): ChannelSubscription {
    return new ChannelSubscription(this.redis, DEVICE_CHANGED_CHANNEL, handlers, 'DeviceMetadata');
  }

  /** Metadata by device id; undefined for devices that are not registered. Throws when Redis fails. */
  async getMany(deviceIds: readonly string[]): Promise<Map<string, DeviceMetadata | undefined>> {
    const result = new Map<string, DeviceMetadata | undefined>();
    if (deviceIds.length === 0) return result;
    const pipeline = this.redis.pipeline();
    for (const id of deviceIds) pipeline.hmget(deviceRegistryKey(id), ...FIELDS);
    const replies = (await pipeline.exec()) ?? [];
    deviceIds.forEach((id, i) => {
      const [error, values] = replies[i] ?? [new Error('no reply')];
      if (error) throw error;
      const fields = values as (string | null)[];
      if (fields.every((v) => v === null)) return result.set(id, undefined);
      const hash: Record<string, string> = {};
      FIELDS.forEach((name, j) => {
        const value = fields[j];
        if (value !== null && value !== undefined) hash[name] = value;
      });
      result.set(id, deviceMetadataOf(hash));
    });
    return result;
  }
}
