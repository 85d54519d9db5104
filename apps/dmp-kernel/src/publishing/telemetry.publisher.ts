import {
  encodeTelemetryPack,
  TELEMETRY_PACK_FORMAT,
  telemetryPackEntryJson,
  TelemetryProperty,
  telemetryShardGroup,
  telemetryShardOf,
  type NormalizedTelemetry,
} from '@dmp/contracts';
import { MessagingAttribute as ATTR, RocketMqProducer, ROCKETMQ_SYSTEM } from '@dmp/messaging';
import { injectTraceContext, MetricsRegistry, recordFailure, startSpanLazily } from '@dmp/observability';
import { Inject, Injectable } from '@nestjs/common';
import { context, ROOT_CONTEXT, SpanKind, trace, type Link } from '@opentelemetry/api';
import type { Histogram } from 'prom-client';
import { KERNEL_CONFIG, type KernelConfig } from '../config';
import { LanePacker } from './lane-packer';

/** A normalized message on its way into a pack. */
interface PackedTelemetry {
  json: string;
  /** Its `create` span, linked from the pack's `send` span. */
  link: Link;
}

const tracer = trace.getTracer('dmp-kernel');
/** OpenTelemetry keeps 128 links per span by default. */
const MAX_SEND_LINKS = 128;
const PACK_BUCKETS = [1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2500];

/**
 * Publishes normalized telemetry: snapshots to the snapshot topic, change events and device events
 * to the event topic, packed per device shard (see `@dmp/contracts` telemetry-pack): one lane per
 * topic and shard, one send in flight per lane, packs growing with the load. Each message gets a
 * `create` span in its own trace, whose context its pack entry carries; the pack's `send` span,
 * a trace of its own, links them.
 */
@Injectable()
export class TelemetryPublisher {
  private readonly packer: LanePacker<PackedTelemetry>;
  private readonly packMessages: Histogram<'topic'>;

  constructor(
    private readonly producer: RocketMqProducer,
    @Inject(KERNEL_CONFIG) private readonly config: KernelConfig,
    metrics: MetricsRegistry,
  ) {
    this.packer = new LanePacker(config.kernel.pack, (lane, items) => this.sendPack(lane, items));
    this.packMessages = metrics.histogram(
      'dmp_kernel_pack_messages',
      'Device messages per RocketMQ message (pack)',
      ['topic'],
      PACK_BUCKETS,
    );
    const packer = this.packer;
    metrics.gauge(
      'dmp_kernel_pack_waiting',
      'Messages waiting for their lane (topic and shard) to finish its send in flight',
      [],
      function () {
        this.set(packer.waiting);
      },
    );
    metrics.gauge(
      'dmp_kernel_pack_waiting_bytes',
      'Bytes of the messages waiting for their lane (topic and shard)',
      [],
      function () {
        this.set(packer.waitingBytes);
      },
    );
  }

  topicOf(kind: NormalizedTelemetry['kind']): string {
    return kind === 'snapshot' ? this.config.rocketmq.topics.snapshot : this.config.rocketmq.topics.event;
  }

  /** The lane (`topic/shard`) a device's messages of a kind go through. */
  laneOf(kind: NormalizedTelemetry['kind'], deviceId: string): string {
    return `${this.topicOf(kind)}/${telemetryShardOf(deviceId, this.config.kernel.pack.shards)}`;
  }

  /**
   * The first of these lanes that is full (KERNEL_PACK_LANE_MAX_MESSAGES / _BYTES), with what waits in
   * it; undefined when every one has room.
   */
  fullLane(lanes: Iterable<string>): { lane: string; items: number; bytes: number } | undefined {
    for (const lane of lanes) if (this.packer.isFull(lane)) return { lane, ...this.packer.laneWaiting(lane) };
    return undefined;
  }

  /**
   * Resolves once RocketMQ stored the pack carrying the message; throws DmpError (see
   * RocketMqProducer.send), PrecedingItemFailedError when an earlier message of the device failed, or
   * ItemCancelledError when `signal` aborted while the message waited for its lane (it is not sent).
   * Hands the message to its lane before its first await: a device's messages published one after the
   * other in one turn are stored in that order. Does not look at the lane's bound (see fullLane).
   * Part of the per-device order invariant: see docs/engineering.md, "Per-device order".
   */
  async publish(telemetry: NormalizedTelemetry, signal?: AbortSignal): Promise<void> {
    const topic = this.topicOf(telemetry.kind);
    const shard = telemetryShardOf(telemetry.deviceId, this.config.kernel.pack.shards);
    const span = startSpanLazily(
      tracer,
      `create ${topic}`,
      { kind: SpanKind.PRODUCER },
      context.active(),
      () => ({
        [ATTR.system]: ROCKETMQ_SYSTEM,
        [ATTR.destination]: topic,
        [ATTR.operationType]: 'create',
        [ATTR.operationName]: 'create',
        [ATTR.messageGroup]: telemetryShardGroup(shard),
        'messaging.message.id': telemetry.messageId,
        'dmp.device.id': telemetry.deviceId,
      }),
    );
    const json = telemetryPackEntryJson({
      telemetry,
      ...injectTraceContext(trace.setSpan(context.active(), span)),
    });
    try {
      await this.packer.add(
        `${topic}/${shard}`,
        telemetry.deviceId,
        { json, link: { context: span.spanContext() } },
        Buffer.byteLength(json),
        signal,
      );
    } catch (error) {
      recordFailure(span, error);
      throw error;
    } finally {
      span.end();
    }
  }

  private async sendPack(lane: string, items: readonly PackedTelemetry[]): Promise<void> {
    const [topic, shard] = lane.split('/');
    this.packMessages.observe({ topic }, items.length);
    // The pack belongs to no single message's trace.
    await context.with(ROOT_CONTEXT, () =>
      this.producer.send({
        topic,
        body: encodeTelemetryPack(items.map((item) => item.json)),
        messageGroup: telemetryShardGroup(Number(shard)),
        properties: {
          [TelemetryProperty.format]: TELEMETRY_PACK_FORMAT,
          [TelemetryProperty.count]: String(items.length),
        },
        links: items.slice(0, MAX_SEND_LINKS).map((item) => item.link),
      }),
    );
  }
}
