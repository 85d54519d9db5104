import { type DeviceMetadata, DmpError, KernelErrorCode } from '@dmp/contracts';
import { MetricsRegistry } from '@dmp/observability';
import type { ChannelSubscription } from '@dmp/redis';
import { Inject, Injectable, Logger, type OnApplicationShutdown, type OnModuleInit } from '@nestjs/common';
import { LRUCache } from 'lru-cache';
import type { Counter } from 'prom-client';
import { KERNEL_CONFIG, type KernelConfig } from '../config';
import { DeviceMetadataRepository } from './device-metadata.repository';

export const EMPTY_METADATA: DeviceMetadata = Object.freeze({
  tenantId: '',
  productId: '',
  siteId: '',
  tags: Object.freeze({}) as Record<string, string>,
});

interface Entry {
  metadata?: DeviceMetadata;
}

/**
 * Device metadata for enrichment and rules, behind a bounded in-process LRU cache.
 *
 * - Entries live DEVICE_CACHE_TTL_MS (unknown devices DEVICE_UNKNOWN_CACHE_TTL_MS); every change published on
 *   `dmp:device-changed` drops the device's entry at once; after the subscription was lost and restored, the
 *   whole cache is dropped (changes may have been missed).
 * - A whole batch is looked up at once: cached ids answer from memory, the others in one pipelined round trip.
 * - A lookup racing an invalidation is not cached (it may have read the old state).
 * - Redis unreachable: expired entries are still used; with none, DMP_ERR_METADATA_UNAVAILABLE (retryable).
 * - Unknown devices get empty metadata (dmp-mqtt only forwards registered devices anyway).
 */
@Injectable()
export class DeviceMetadataCache implements OnModuleInit, OnApplicationShutdown {
  private readonly log = new Logger('DeviceMetadata');
  private readonly cache: LRUCache<string, Entry>;
  private readonly changes: ChannelSubscription;
  /** Ids being loaded, and whether an invalidation arrived meanwhile. */
  private readonly loading = new Map<string, { stale: boolean }>();
  private readonly lookups: Counter<'result'>;
  private readonly invalidations: Counter;

  constructor(
    private readonly repository: DeviceMetadataRepository,
    @Inject(KERNEL_CONFIG) private readonly config: KernelConfig,
    metrics: MetricsRegistry,
  ) {
    this.cache = new LRUCache<string, Entry>({
      max: config.enrichment.cacheMaxEntries,
      ttl: config.enrichment.cacheTtlMs,
      noDeleteOnStaleGet: true,
      allowStale: false,
    });
    this.changes = repository.changes({
      onMessage: (deviceId) => this.invalidate(deviceId),
      onSubscribed: (restored) => {
        if (!restored) return;
        this.log.warn('device change subscription restored: dropping the whole metadata cache');
        this.cache.clear();
        for (const entry of this.loading.values()) entry.stale = true;
      },
    });
    this.lookups = metrics.counter(
      'dmp_kernel_device_lookups_total',
      'Device metadata lookups, by result (hit | miss | stale | error)',
      ['result'],
    );
    this.invalidations = metrics.counter(
      'dmp_kernel_device_cache_invalidations_total',
      'Device metadata cache entries dropped because the device changed (Redis pub/sub)',
    );
    const cache = this.cache;
    metrics.gauge('dmp_kernel_device_cache_entries', 'Devices in the metadata cache', [], function () {
      this.set(cache.size);
    });
  }

  async onModuleInit(): Promise<void> {
    await this.changes.start();
  }

  async onApplicationShutdown(): Promise<void> {
    await this.changes.stop();
  }

  invalidate(deviceId: string): void {
    this.cache.delete(deviceId);
    const loading = this.loading.get(deviceId);
    if (loading) loading.stale = true;
    this.invalidations.inc();
  }

  async get(deviceId: string): Promise<DeviceMetadata> {
    return (await this.getMany([deviceId])).get(deviceId) ?? EMPTY_METADATA;
  }

  /** Metadata of every id (empty for unknown devices). Throws DmpError (retryable) when Redis cannot answer. */
  async getMany(deviceIds: Iterable<string>): Promise<Map<string, DeviceMetadata>> {
    const result = new Map<string, DeviceMetadata>();
    const missing: string[] = [];
    for (const id of new Set(deviceIds)) {
      const entry = this.cache.get(id);
      if (entry) {
        this.lookups.inc({ result: 'hit' });
        result.set(id, entry.metadata ?? EMPTY_METADATA);
      } else missing.push(id);
    }
    if (missing.length === 0) return result;
    this.lookups.inc({ result: 'miss' }, missing.length);

    const tokens = missing.map((id) => {
      const token = { stale: false };
      this.loading.set(id, token);
      return token;
    });
    try {
      const loaded = await this.repository.getMany(missing);
      missing.forEach((id, i) => {
        const metadata = loaded.get(id);
        result.set(id, metadata ?? EMPTY_METADATA);
        if (!tokens[i].stale)
          this.cache.set(
            id,
            metadata ? { metadata } : {},
            metadata ? {} : { ttl: this.config.enrichment.unknownCacheTtlMs },
          );
      });
      return result;
    } catch (error) {
      for (const id of missing) {
        // Expired but still held (noDeleteOnStaleGet): better than nothing while Redis is away.
        const stale = this.cache.get(id, { allowStale: true });
        if (!stale) {
          this.lookups.inc({ result: 'error' });
          throw new DmpError(
            KernelErrorCode.MetadataUnavailable,
            `device metadata of ${id} unavailable: ${(error as Error).message}`,
            true,
            { cause: error },
          );
        }
        this.lookups.inc({ result: 'stale' });
        result.set(id, stale.metadata ?? EMPTY_METADATA);
      }
      return result;
    } finally {
      missing.forEach((id, i) => {
        if (this.loading.get(id) === tokens[i]) this.loading.delete(id);
      });
    }
  }
}
