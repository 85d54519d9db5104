import { MetricsRegistry } from '@dmp/observability';
import { Injectable } from '@nestjs/common';
import type { Counter } from 'prom-client';

/** What happened to device messages, by channel, kind and reason code. */
@Injectable()
export class IngestMetrics {
  readonly received: Counter<'channel'>;
  readonly forwarded: Counter<'kind'>;
  readonly rejected: Counter<'reason'>;
  readonly filtered: Counter<'reason'>;
  readonly rateLimitHits: Counter;

  constructor(registry: MetricsRegistry) {
    this.received = registry.counter('dmp_mqtt_received_total', 'Device messages received from the broker', [
      'channel',
    ]);
    this.forwarded = registry.counter('dmp_mqtt_forwarded_total', 'Device messages accepted by dmp-kernel', [
      'kind',
    ]);
    this.rejected = registry.counter(
      'dmp_mqtt_rejected_total',
      'Device messages rejected (dead-lettered, acknowledged, not forwarded), by DMP_ERR_* code',
      ['reason'],
    );
    this.filtered = registry.counter(
      'dmp_mqtt_filtered_total',
      'Device messages acknowledged and deliberately not forwarded (e.g. heartbeats)',
      ['reason'],
    );
    this.rateLimitHits = registry.counter(
      'dmp_mqtt_rate_limit_hits_total',
      'Device messages over their device\'s token bucket (also in dmp_mqtt_rejected_total{reason="DMP_ERR_RATE_LIMITED"})',
    );
  }
}
