import {
  DEVICE_ID_PATTERN,
  type DeviceMetadata,
  type NormalizedTelemetry,
  type TelemetryEnvelope,
} from '@dmp/contracts';
import { MetricsRegistry } from '@dmp/observability';
import { normalizeTelemetry } from '@dmp/rules';
import { Injectable } from '@nestjs/common';
import type { Counter } from 'prom-client';
import { DeviceMetadataCache, EMPTY_METADATA } from '../enrichment/device-metadata.cache';
import { RuleSetHolder } from '../rules/rule-set.holder';

/**
 * Turns an accepted device message into the RocketMQ body: enriched with the device's metadata (tenant,
 * product, site from the Redis registry) and normalized by its product's model (field mapping, unit
 * conversion — declared in `rules/products/*.yaml`, swapped with the rule set). The product id comes from
 * the metadata, so enrichment comes first: lookup → normalize → publish.
 */
@Injectable()
export class Normalizer {
  private readonly skipped: Counter<'product'>;

  constructor(
    private readonly metadata: DeviceMetadataCache,
    private readonly holder: RuleSetHolder,
    metrics: MetricsRegistry,
  ) {
    this.skipped = metrics.counter(
      'dmp_kernel_normalization_skipped_total',
      'Metric values left unconverted because they were not numbers, by product',
      ['product'],
    );
  }

  /** Metadata of a batch's devices, cached or in one Redis round trip; throws DmpError (retryable) when unavailable. */
  lookup(deviceIds: Iterable<string>): Promise<Map<string, DeviceMetadata>> {
    return this.metadata.getMany([...deviceIds].filter((id) => DEVICE_ID_PATTERN.test(id)));
  }

  normalize(envelope: TelemetryEnvelope, metadata: DeviceMetadata = EMPTY_METADATA): NormalizedTelemetry {
    const { telemetry, skipped } = normalizeTelemetry(envelope, metadata, this.holder.current.products);
    if (skipped.length) this.skipped.inc({ product: metadata.productId }, skipped.length);
    return telemetry;
  }
}

/** An envelope without metadata or product model (tenant, product and site empty). */
export function normalizeEnvelope(envelope: TelemetryEnvelope): NormalizedTelemetry {
  return { ...envelope, tenantId: '', productId: '', siteId: '' };
}
