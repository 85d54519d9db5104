import type { Redis } from 'ioredis';

export type ScriptArg = string | number;

/**
 * A Lua script as a function of the connection: defined once (ioredis sends EVALSHA, and the script
 * itself when Redis does not know it yet). `numberOfKeys`: how many of the arguments are keys (they
 * come first); undefined: the caller gives that count as the first argument.
 */
export function defineScript<Result>(
  redis: Redis,
  name: string,
  lua: string,
  numberOfKeys?: number,
): (...args: ScriptArg[]) => Promise<Result> {
  redis.defineCommand(name, numberOfKeys === undefined ? { lua } : { numberOfKeys, lua });
  const command = (redis as unknown as Record<string, (...args: ScriptArg[]) => Promise<Result>>)[name];
  return (...args) => command.apply(redis, args);
}

/**
 * A compare-and-set written in one atomic step with the outbox entries it obliges (the transactional
 * outbox: nothing a change causes is lost, and nothing is caused by a change that lost). The store gives
 * two Lua snippets over `KEYS` (its own keys) and `A` (its own arguments): `read` returns the current
 * token of the record (a string), `write` makes the change. The change and its entries are applied only
 * when the token is the expected one; `apply` then answers true, and false on a conflict (the caller
 * re-reads).
 */
export class CompareAndSet {
  private readonly run: (...args: ScriptArg[]) => Promise<number>;

  constructor(redis: Redis, name: string, script: { read: string; write: string }) {
    this.run = defineScript<number>(redis, name, casLua(script));
  }

  /**
   * `keys`: the store's keys (KEYS[1]… in its snippets); `args`: its arguments (A[1]…); `outbox`: the
   * hash and sorted set of the outbox, and its (id, entry JSON) pairs, leased until `leaseUntil`.
   */
  async apply(
    keys: readonly string[],
    expected: string,
    args: readonly ScriptArg[],
    outbox: {
      hash: string;
      lease: string;
      entries: readonly (readonly [string, string])[];
      leaseUntil: number;
    },
  ): Promise<boolean> {
    const flat: ScriptArg[] = [keys.length + 2, ...keys, outbox.hash, outbox.lease];
    flat.push(expected, outbox.leaseUntil, args.length, ...args);
    for (const [id, entry] of outbox.entries) flat.push(id, entry);
    return (await this.run(...flat)) === 1;
  }
}

// KEYS: the store's, then the outbox hash and lease set. ARGV: expected token, lease until, the number m of
// the store's arguments, those (A), then (id, entry) pairs.
const casLua = ({ read, write }: { read: string; write: string }) => `
local m = tonumber(ARGV[3])
local A = {}
for i = 1, m do A[i] = ARGV[3 + i] end
local function current()
${read}
end
if current() ~= ARGV[1] then return 0 end
${write}
for i = 4 + m, #ARGV, 2 do
  redis.call('HSET', KEYS[#KEYS - 1], ARGV[i], ARGV[i + 1])
  redis.call('ZADD', KEYS[#KEYS], ARGV[2], ARGV[i])
end
return 1
`;
