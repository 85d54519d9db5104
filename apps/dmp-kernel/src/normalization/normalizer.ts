import type { NormalizedTelemetry, TelemetryEnvelope } from '@dmp/contracts';
import { Injectable } from '@nestjs/common';

/**
 * Turns an accepted device message into the RocketMQ body. Today that only adds the (still empty)
 * tenant, product and site; product-model mapping, unit conversion and the Redis device lookup
 * are later steps of this same `normalize`, which is why it is asynchronous.
 */
@Injectable()
export class Normalizer {
  async normalize(envelope: TelemetryEnvelope): Promise<NormalizedTelemetry> {
    return normalizeEnvelope(envelope);
  }
}

export function normalizeEnvelope(envelope: TelemetryEnvelope): NormalizedTelemetry {
  return { ...envelope, tenantId: '', productId: '', siteId: '' };
}
