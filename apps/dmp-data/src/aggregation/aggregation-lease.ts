import { errorMessage } from '@dmp/contracts';
import { defineScript, REDIS_CLIENT } from '@dmp/redis';
import { Inject, Injectable, Logger } from '@nestjs/common';
import type { Redis } from 'ioredis';
import { randomBytes } from 'node:crypto';
import { DATA_CONFIG, type DataConfig } from '../config';

/** Takes the lease when it is free, extends it when this instance holds it: 1 when held after, else 0. */
const HOLD = `
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then return 1 end
return 0`;

/** Gives the lease up if this instance holds it. */
const RELEASE = `
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0`;

/** Whether this instance may aggregate now: it holds the lease, another does, or Redis cannot say. */
export type LeaseState = 'held' | 'elsewhere' | 'unknown';

/**
 * Which dmp-data instance recomputes `telemetry_1m`: one lease per database in Redis
 * (`dmp:data:aggregation:<database>`), taken or extended before each pass — and every third of it while a
 * pass runs — for DATA_AGGREGATION_LEASE_MS, and given up on shutdown. A holder that dies (kill -9) loses it when it
 * expires; another instance takes it on its next pass and reads on from the cursor in ClickHouse.
 * The lease only saves work: recomputations are idempotent (versioned by their snapshot), so two
 * instances aggregating at once — while Redis is unreachable, or when a holder stalls past the lease —
 * store the same rows twice, nothing worse.
 */
@Injectable()
export class AggregationLease {
  private readonly logger = new Logger(AggregationLease.name);
  private readonly key: string;
  private readonly owner = randomBytes(8).toString('hex');
  private readonly ttlMs: number;
  private readonly holdScript: (key: string, owner: string, ttlMs: number) => Promise<number>;
  private readonly releaseScript: (key: string, owner: string) => Promise<number>;
  private last?: LeaseState;

  constructor(@Inject(REDIS_CLIENT) redis: Redis, @Inject(DATA_CONFIG) config: DataConfig) {
    this.key = `dmp:data:aggregation:${config.clickhouse.database}`;
    this.ttlMs = config.data.aggregation.leaseMs;
    this.holdScript = defineScript(redis, 'dmpAggregationLeaseHold', HOLD, 1);
    this.releaseScript = defineScript(redis, 'dmpAggregationLeaseRelease', RELEASE, 1);
  }

  /** Takes or extends the lease. */
  async hold(): Promise<LeaseState> {
    let state: LeaseState;
    try {
      state = (await this.holdScript(this.key, this.owner, this.ttlMs)) === 1 ? 'held' : 'elsewhere';
    } catch (error) {
      state = 'unknown';
      if (this.last !== 'unknown')
        this.logger.warn(`aggregation lease unknown, aggregating anyway: ${errorMessage(error)}`);
    }
    if (state === 'held' && this.last !== 'held')
      this.logger.log(`aggregating for every instance (${this.key})`);
    this.last = state;
    return state;
  }

  /** Gives the lease up (if held), so that another instance takes over at its next pass. */
  async release(): Promise<void> {
    if (this.last !== 'held') return;
    this.last = 'unknown';
    await this.releaseScript(this.key, this.owner).catch(() => undefined);
  }
}
