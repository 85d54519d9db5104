import { DeviceErrorCode, DmpError } from '@dmp/contracts';
import { MetricsRegistry } from '@dmp/observability';
import type { ChannelSubscription } from '@dmp/redis';
import { Inject, Injectable, Logger, type OnApplicationShutdown, type OnModuleInit } from '@nestjs/common';
import { LRUCache } from 'lru-cache';
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import type { Counter } from 'prom-client';
import { MQTT_APP_CONFIG, type MqttAppConfig } from '../config';
import type { StoredDevice } from './device';
import { DeviceRepository } from './device.repository';
import { verifySecret } from './device-secret';

/** A cached answer: the device, or "not registered". */
interface Entry {
  device?: StoredDevice;
  /** The change subscription's generation it was read in; an older one may have missed a change. */
  generation: number;
}

/** How long a successful password check is remembered (scrypt costs tens of ms per check). */
const VERIFIED_TTL_MS = 10 * 60_000;

/**
 * Who is a device, for every message and every connection: the registry (DeviceRepository) behind an
 * in-process cache.
 *
 * - Lookups are cached for DEVICE_CACHE_TTL_MS (unknown ids for DEVICE_UNKNOWN_CACHE_TTL_MS), concurrent
 *   lookups of one id share one Redis call, and every change published on `dmp:device-changed` (by any
 *   replica or the admin API) drops the cached entry at once — so disabling a device takes effect within
 *   the pub/sub latency, milliseconds. After the subscription connection was lost every cached entry is
 *   marked stale (changes may have been missed meanwhile), not dropped: the next lookup of a stale entry
 *   reads Redis again and falls back to the entry if Redis does not answer. Dropping the cache would
 *   leave every device uncached if Redis went away again (a flapping connection) — and an uncached
 *   device's messages cannot be decided while Redis is away.
 * - Redis unreachable: the last known answer is used even when expired or stale; with none, the lookup
 *   fails with DMP_ERR_REGISTRY_UNAVAILABLE (retryable) and the message waits — it is not refused
 *   ({@link whenAvailable} tells when to try again).
 * - Password checks (scrypt) that succeeded are remembered as an HMAC of the password under a key that
 *   lives only in this process, until the device changes or 10 minutes pass: reconnect storms cost one
 *   scrypt per device, not one per attempt.
 */
@Injectable()
export class DeviceRegistry implements OnModuleInit, OnApplicationShutdown {
  private readonly log = new Logger('DeviceRegistry');
  private readonly cache: LRUCache<string, Entry>;
  private readonly inflight = new Map<
    string,
    { promise: Promise<StoredDevice | undefined>; token: symbol }
  >();
  private readonly verified: LRUCache<string, Buffer>;
  private readonly hmacKey = randomBytes(32);
  private readonly changes: ChannelSubscription;
  /** Raised when the change subscription is (re)established: entries of older generations are stale. */
  private generation = 0;
  private readonly invalidations: Counter;
  private readonly lookups: Counter<'result'>;

  constructor(
    private readonly repository: DeviceRepository,
    @Inject(MQTT_APP_CONFIG) private readonly config: MqttAppConfig,
    metrics: MetricsRegistry,
  ) {
    const { cacheMaxEntries, cacheTtlMs } = config.edge.registry;
    this.cache = new LRUCache<string, Entry>({
      max: cacheMaxEntries,
      ttl: Math.max(1, cacheTtlMs),
      // Expired entries stay (until evicted) as the fallback while Redis is unreachable.
      noDeleteOnStaleGet: true,
    });
    this.verified = new LRUCache<string, Buffer>({ max: cacheMaxEntries, ttl: VERIFIED_TTL_MS });
    this.changes = repository.changes({
      onMessage: (deviceId) => this.invalidate(deviceId),
      onSubscribed: (restored) => {
        // Anything cached before may have missed a change. Remembered password checks stay: they are
        // bound to the cached entry's secret hash (see verifyCredentials).
        if (restored)
          this.log.warn(
            'device change subscription restored: cached devices are read again on their next lookup',
          );
        this.generation++;
      },
    });
    this.invalidations = metrics.counter(
      'dmp_mqtt_device_cache_invalidations_total',
      'Device registry cache entries dropped because the device changed (Redis pub/sub)',
    );
    this.lookups = metrics.counter(
      'dmp_mqtt_device_lookups_total',
      'Device registry lookups, by result (hit | miss | refresh | stale | error)',
      ['result'],
    );
  }

  async onModuleInit(): Promise<void> {
    await this.changes.start();
  }

  async onApplicationShutdown(): Promise<void> {
    await this.changes.stop();
  }

  /**
   * The registered device, or undefined when the id is not registered. Throws DmpError
   * DMP_ERR_REGISTRY_UNAVAILABLE (retryable) when Redis cannot answer and nothing is cached.
   */
  lookup(deviceId: string): Promise<StoredDevice | undefined> {
    const entry = this.cache.get(deviceId);
    if (entry?.generation === this.generation) {
      this.lookups.inc({ result: 'hit' });
      return Promise.resolve(entry.device);
    }
    const inflight = this.inflight.get(deviceId);
    if (inflight) return inflight.promise;
    this.lookups.inc({ result: entry ? 'refresh' : 'miss' });
    const token = Symbol(deviceId);
    const promise = this.load(deviceId, token);
    this.inflight.set(deviceId, { promise, token });
    const forget = () => {
      if (this.inflight.get(deviceId)?.token === token) this.inflight.delete(deviceId);
    };
    promise.then(forget, forget);
    return promise;
  }

  /**
   * Resolves once Redis is reachable (at once if it is): when a lookup that failed with
   * DMP_ERR_REGISTRY_UNAVAILABLE is worth trying again.
   */
  whenAvailable(): Promise<void> {
    return this.repository.whenAvailable();
  }

  /** True when a lookup would be answered from the cache (no Redis call). */
  isCached(deviceId: string): boolean {
    return this.cache.get(deviceId)?.generation === this.generation;
  }

  /** The last answer cached about a device, however old (a fallback while Redis does not answer). */
  lastKnown(deviceId: string): { device?: StoredDevice } | undefined {
    return this.cache.get(deviceId, { allowStale: true });
  }

  /** Registered and enabled. */
  async isActive(deviceId: string): Promise<boolean> {
    return (await this.lookup(deviceId))?.status === 'enabled';
  }

  /** True when the device is registered, enabled, and `secret` is its secret. */
  async verifyCredentials(deviceId: string, secret: string): Promise<boolean> {
    const device = await this.lookup(deviceId);
    if (device?.status !== 'enabled' || !device.secretHash) return false;
    const fingerprint = this.fingerprint(device, secret);
    const remembered = this.verified.get(deviceId);
    if (remembered && timingSafeEqual(remembered, fingerprint)) return true;
    if (!(await verifySecret(secret, device.secretHash))) return false;
    // Only if the device did not change while scrypt ran.
    if (this.cache.get(deviceId)?.device === device) this.verified.set(deviceId, fingerprint);
    return true;
  }

  /** Drops what is cached about a device (called for every change announcement). */
  invalidate(deviceId: string): void {
    this.cache.delete(deviceId);
    this.verified.delete(deviceId);
    // A lookup in flight may have read the old state: the next one starts afresh.
    this.inflight.delete(deviceId);
    this.invalidations.inc();
  }

  private async load(deviceId: string, token: symbol): Promise<StoredDevice | undefined> {
    const generation = this.generation;
    try {
      const device = await this.repository.get(deviceId);
      // Cache only if no change announcement arrived while Redis answered (it replaces the token).
      if (this.inflight.get(deviceId)?.token === token) {
        const { unknownCacheTtlMs, cacheTtlMs } = this.config.edge.registry;
        const ttl = device ? cacheTtlMs : unknownCacheTtlMs;
        if (ttl > 0) this.cache.set(deviceId, { device, generation }, { ttl });
      }
      return device;
    } catch (error) {
      const stale = this.cache.get(deviceId, { allowStale: true });
      if (stale) {
        this.lookups.inc({ result: 'stale' });
        return stale.device;
      }
      this.lookups.inc({ result: 'error' });
      throw new DmpError(
        DeviceErrorCode.RegistryUnavailable,
        `device registry unavailable: ${(error as Error).message}`,
        true,
        { cause: error },
      );
    }
  }

  private fingerprint(device: StoredDevice, secret: string): Buffer {
    return createHmac('sha256', this.hmacKey).update(device.secretHash).update('\0').update(secret).digest();
  }
}
