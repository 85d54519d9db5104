import { defineScript, REDIS_CLIENT } from '@dmp/redis';
import { Inject, Injectable } from '@nestjs/common';
import type { Redis } from 'ioredis';
import type { DedupKey } from './dedup-keys';

/** Marks a batch of keys in one command: KEYS are the keys, ARGV their windows in ms. */
const MARK = `for i, key in ipairs(KEYS) do redis.call('SET', key, '1', 'PX', ARGV[i]) end
return #KEYS`;

/**
 * The keys of messages dmp-kernel accepted (`dmp:dedup:*`, see dedup-keys.ts), in Redis: shared by every
 * replica, each expiring with its window. Batches are the caller's (one command per batch).
 */
@Injectable()
export class DedupRepository {
  private readonly markScript: (numberOfKeys: number, ...args: (string | number)[]) => Promise<number>;

  constructor(@Inject(REDIS_CLIENT) private readonly redis: Redis) {
    this.markScript = defineScript(redis, 'dmpDedupMark', MARK);
  }

  /** The connection's state: a command sent while it is not 'ready' waits for a reconnection. */
  get status(): string {
    return this.redis.status;
  }

  /** Whether each key is marked (one MGET). */
  async marked(keys: readonly string[]): Promise<boolean[]> {
    return (await this.redis.mget(...keys)).map((value) => value !== null);
  }

  /** Marks each key for its window (one script call). */
  async mark(keys: readonly DedupKey[]): Promise<void> {
    await this.markScript(keys.length, ...keys.map((k) => k.key), ...keys.map((k) => k.windowMs));
  }
}
