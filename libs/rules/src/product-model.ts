import {
  METRIC_NAME_PATTERN,
  type DeviceMetadata,
  type MetricValue,
  type NormalizedTelemetry,
  type TelemetryEnvelope,
} from '@dmp/contracts';
import type { Conversion } from './units';

/**
 * A product model, declared in data (`rules/products/*.yaml`): how a product's devices name and scale
 * their fields, mapped to DMP's canonical metrics. Compiled by the rule set compiler
 * (engine/ruleset.ts), which also reports its errors with file, line and column.
 */
export interface ProductModel {
  id: string;
  name: string;
  /** Canonical metric ← device field (+ conversion). */
  mappings: readonly MetricMapping[];
  /** Device fields no mapping reads are kept under their own name (default) or dropped. */
  keepUnmapped: boolean;
}

export interface MetricMapping {
  metric: string;
  from: string;
  convert?: Conversion;
  /** Decimals kept after a conversion (binary floating point would show 77.00000000000001). */
  decimals: number;
}

export interface ProductModels {
  byId: ReadonlyMap<string, ProductModel>;
}

export const EMPTY_PRODUCTS: ProductModels = { byId: new Map() };

export interface NormalizationResult {
  metrics: Record<string, MetricValue>;
  /** Fields a numeric conversion was declared for but whose value was not a number: kept unconverted. */
  skipped: string[];
}

/** Applies a product model to a message's metrics. */
export function normalizeMetrics(
  product: ProductModel,
  metrics: Readonly<Record<string, MetricValue>>,
): NormalizationResult {
  const out: Record<string, MetricValue> = {};
  const skipped: string[] = [];
  if (product.keepUnmapped) {
    const read = new Set(product.mappings.map((m) => m.from));
    for (const [name, value] of Object.entries(metrics)) if (!read.has(name)) out[name] = value;
  }
  for (const mapping of product.mappings) {
    if (!(mapping.from in metrics)) continue;
    const value = metrics[mapping.from];
    if (!mapping.convert) {
      out[mapping.metric] = value;
    } else if (typeof value === 'number') {
      out[mapping.metric] = round(mapping.convert(value), mapping.decimals);
    } else {
      out[mapping.metric] = value;
      skipped.push(mapping.from);
    }
  }
  return { metrics: out, skipped };
}

function round(value: number, decimals: number): number {
  const factor = 10 ** decimals;
  const rounded = Math.round(value * factor) / factor;
  return Number.isFinite(rounded) ? rounded : value;
}

/**
 * The RocketMQ body for an accepted device message: the device's metadata (tenant, product, site) and its
 * metrics mapped through its product's model (unchanged when the product has none).
 */
export function normalizeTelemetry(
  envelope: TelemetryEnvelope,
  metadata: DeviceMetadata,
  products: ProductModels,
): { telemetry: NormalizedTelemetry; skipped: string[] } {
  const product = metadata.productId ? products.byId.get(metadata.productId) : undefined;
  const { metrics, skipped } = product
    ? normalizeMetrics(product, envelope.metrics)
    : { metrics: envelope.metrics, skipped: [] };
  return {
    telemetry: {
      ...envelope,
      metrics,
      tenantId: metadata.tenantId,
      productId: metadata.productId,
      siteId: metadata.siteId,
    },
    skipped,
  };
}

export const isMetricName = (name: string): boolean => METRIC_NAME_PATTERN.test(name);
