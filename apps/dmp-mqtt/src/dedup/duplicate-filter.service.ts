import type { TelemetryEnvelope } from '@dmp/contracts';
import { MetricsRegistry } from '@dmp/observability';
import { Inject, Injectable, Logger } from '@nestjs/common';
import { LRUCache } from 'lru-cache';
import type { Counter } from 'prom-client';
import { MQTT_APP_CONFIG, type MqttAppConfig } from '../config';
import { type ClaimState, decideArrival, decideLookup, decideSettle } from './dedup-claim';
import { DedupRepository } from './dedup.repository';
import { dedupKeys, type DedupKey, type DuplicateKind } from './dedup-keys';
import { MicroBatcher } from './micro-batcher';

/** A message's right to be forwarded: `commit` once dmp-kernel took it, `release` if it did not. */
export interface DedupClaim {
  commit(): void;
  release(): void;
}

export type DedupResult =
  { duplicate: false; claim: DedupClaim } | { duplicate: true; kind: DuplicateKind; key: string };

/** Recently accepted keys remembered in this process (a fast path; Redis is the shared truth). */
const LOCAL_ACCEPTED_MAX = 100_000;
const ERROR_LOG_INTERVAL_MS = 10_000;
const NO_CLAIM: DedupClaim = { commit: () => undefined, release: () => undefined };

/**
 * Drops duplicates: the same device + message id within DEDUP_MESSAGE_ID_WINDOW_MS, or the same content
 * within DEDUP_CONTENT_WINDOW_MS (see dedup-keys.ts) — across replicas, through Redis.
 *
 * A message is marked as seen only once dmp-kernel accepted it (`commit`). Marking it on arrival would
 * lose it: if the hand-off then failed, the broker's redelivery would find the mark and be dropped as
 * a duplicate of a message that never got anywhere. So:
 *  1. arrival: is any key of the message marked (this replica's recently accepted keys, then Redis —
 *     one MGET per DEDUP_BATCH_LINGER_MS for all messages arriving meanwhile)? → duplicate;
 *  2. a copy arriving while the first is still being handed off in this replica waits for the first's
 *     outcome (accepted → duplicate; not accepted → it goes on itself) — with EMQX's `hash_clientid`
 *     strategy all copies of a device's messages come to the same replica;
 *  3. accepted: `SET key 1 PX window` for each key (batched the same way, one script call), not awaited
 *     by the PUBACK.
 * Two copies handed off by two replicas at the same moment both get through; ClickHouse's
 * ReplacingMergeTree key (device_id, ts_ms, message_id) collapses them, so at worst a duplicate is
 * stored once more, never a message lost. For the same reason Redis being unreachable lets messages
 * through unchecked (counted in dmp_mqtt_dedup_errors_total) rather than stopping intake.
 */
@Injectable()
export class DuplicateFilter {
  private readonly log = new Logger('DuplicateFilter');
  private readonly windows: { messageIdWindowMs: number; contentWindowMs: number };
  private readonly pending = new Map<string, PendingClaim>();
  private readonly accepted = new LRUCache<string, DuplicateKind>({ max: LOCAL_ACCEPTED_MAX, ttl: 1 });
  private readonly exists: MicroBatcher<string, boolean>;
  private readonly marks: MicroBatcher<DedupKey, undefined>;
  private readonly hits: Counter<'kind' | 'where'>;
  private readonly errors: Counter<'operation'>;
  private lastErrorLogAt = 0;

  constructor(
    private readonly redis: DedupRepository,
    @Inject(MQTT_APP_CONFIG) config: MqttAppConfig,
    metrics: MetricsRegistry,
  ) {
    const { messageIdWindowMs, contentWindowMs, batchLingerMs, batchMax } = config.edge.dedup;
    this.windows = { messageIdWindowMs, contentWindowMs };
    const batching = { lingerMs: batchLingerMs, maxItems: batchMax };
    // One command per batch, not one per key: the client's per-command work was most of the cost.
    this.exists = new MicroBatcher(batching, (keys) => this.redis.marked(keys));
    this.marks = new MicroBatcher(batching, async (keys) => {
      await this.redis.mark(keys);
      return keys.map(() => undefined);
    });
    this.hits = metrics.counter('dmp_mqtt_dedup_hits_total', 'Duplicates dropped, by kind and where found', [
      'kind',
      'where',
    ]);
    this.errors = metrics.counter(
      'dmp_mqtt_dedup_errors_total',
      'Duplicate checks or marks that Redis could not answer (the message went through unchecked)',
      ['operation'],
    );
  }

  get enabled(): boolean {
    return this.windows.messageIdWindowMs > 0 || this.windows.contentWindowMs > 0;
  }

  async check(envelope: TelemetryEnvelope): Promise<DedupResult> {
    const keys = dedupKeys(envelope, this.windows);
    if (keys.length === 0) return { duplicate: false, claim: NO_CLAIM };
    for (;;) {
      const arrival = decideArrival({ keys, accepted: this.accepted, pending: this.pending });
      if (arrival.kind === 'duplicate') return this.duplicate(arrival.key, 'local');
      if (arrival.kind === 'claim') break;
      await arrival.claim.settled;
    }
    const claim = new PendingClaim(keys, this.pending, (accepted) => this.settle(accepted));
    const lookup = decideLookup(keys, await this.findInRedis(keys));
    if (lookup.kind === 'duplicate') {
      claim.release();
      return this.duplicate(lookup.key, 'redis');
    }
    return { duplicate: false, claim };
  }

  private duplicate(key: DedupKey, where: 'local' | 'redis'): DedupResult {
    this.hits.inc({ kind: key.kind, where });
    return { duplicate: true, kind: key.kind, key: key.key };
  }

  /** Which keys Redis has marked; undefined when it did not answer. */
  private async findInRedis(keys: DedupKey[]): Promise<boolean[] | undefined> {
    if (this.redis.status !== 'ready') {
      this.noteError('check', new Error(`Redis is ${this.redis.status}`));
      return undefined;
    }
    try {
      return await Promise.all(keys.map((k) => this.exists.submit(k.key)));
    } catch (error) {
      this.noteError('check', error);
      return undefined;
    }
  }

  private settle(accepted: DedupKey[]): void {
    for (const key of accepted) {
      this.accepted.set(key.key, key.kind, { ttl: key.windowMs });
      if (this.redis.status !== 'ready') {
        this.noteError('mark', new Error(`Redis is ${this.redis.status}`));
        continue;
      }
      this.marks.submit(key).catch((error: unknown) => this.noteError('mark', error));
    }
  }

  private noteError(operation: 'check' | 'mark', error: unknown): void {
    this.errors.inc({ operation });
    const now = Date.now();
    if (now - this.lastErrorLogAt < ERROR_LOG_INTERVAL_MS) return;
    this.lastErrorLogAt = now;
    this.log.warn(`duplicate ${operation} skipped, Redis did not answer: ${(error as Error).message}`);
  }
}

/** A message being handed off: later copies wait for `settled`. */
class PendingClaim implements DedupClaim {
  readonly settled: Promise<void>;
  private resolve!: () => void;
  private state: ClaimState = 'pending';

  constructor(
    private readonly keys: DedupKey[],
    private readonly pending: Map<string, PendingClaim>,
    private readonly onCommit: (keys: DedupKey[]) => void,
  ) {
    this.settled = new Promise((resolve) => (this.resolve = resolve));
    for (const key of keys) pending.set(key.key, this);
  }

  commit(): void {
    this.settle('commit');
  }

  release(): void {
    this.settle('release');
  }

  private settle(outcome: 'commit' | 'release'): void {
    const next = decideSettle(this.state, outcome);
    this.state = next.state;
    if (next.unregister)
      for (const key of this.keys) if (this.pending.get(key.key) === this) this.pending.delete(key.key);
    if (next.mark) this.onCommit(this.keys);
    this.resolve();
  }
}
