import { DeviceErrorCode, DmpError } from '@dmp/contracts';
import { randomBytes, scrypt, timingSafeEqual, type ScryptOptions } from 'node:crypto';
import { ConcurrencyGate } from './concurrency-gate';

/**
 * Device secrets are stored as salted scrypt hashes: `scrypt$N$r$p$<salt>$<hash>` (base64). The
 * parameters travel with the hash, so they can be raised later without invalidating stored secrets.
 * node:crypto runs scrypt on the libuv thread pool: hashing does not block the event loop, but the pool
 * has 4 threads for the whole process — so checks go through one process-wide gate
 * ({@link limitSecretChecks}): a few at once, a bounded queue, the rest refused at once.
 */
const PARAMS = { N: 16_384, r: 8, p: 1 } as const;
const KEY_LENGTH = 32;
const SALT_BYTES = 16;
/** Enough for N = 2^17 with r = 8 (128 · N · r bytes), the largest cost {@link verifySecret} accepts. */
const MAX_MEMORY = 256 * 1024 * 1024;
const MAX_COST = 2 ** 17;

/**
 * What {@link burnSecretCheck} compares with: the current parameters, a fixed salt, a hash no secret
 * derives (all zeros). An unknown or disabled device thus costs one scrypt like a wrong secret does.
 */
const DUMMY_HASH = [
  'scrypt',
  PARAMS.N,
  PARAMS.r,
  PARAMS.p,
  Buffer.from('dmp-no-such-device').subarray(0, SALT_BYTES).toString('base64'),
  Buffer.alloc(KEY_LENGTH).toString('base64'),
].join('$');

let checks = new ConcurrencyGate(2, 32);

/** Sets the process-wide limits of {@link verifySecret}; checks already running or queued keep theirs. */
export function limitSecretChecks(maxRunning: number, maxQueued: number): ConcurrencyGate {
  checks = new ConcurrencyGate(maxRunning, maxQueued);
  return checks;
}

/** A new random secret: 32 URL-safe characters (192 bits). */
export function generateSecret(): string {
  return randomBytes(24).toString('base64url');
}

export async function hashSecret(secret: string): Promise<string> {
  const salt = randomBytes(SALT_BYTES);
  const hash = await derive(secret, salt, KEY_LENGTH, PARAMS);
  return ['scrypt', PARAMS.N, PARAMS.r, PARAMS.p, salt.toString('base64'), hash.toString('base64')].join('$');
}

/**
 * True when `secret` matches the stored hash. A malformed hash never matches. Throws DmpError
 * DMP_ERR_AUTH_OVERLOADED (retryable) without checking when too many checks run and wait already.
 */
export async function verifySecret(secret: string, encoded: string): Promise<boolean> {
  const outcome = await checks.run(() => compare(secret, encoded));
  if (!outcome)
    throw new DmpError(DeviceErrorCode.AuthOverloaded, 'too many secret checks in progress', true);
  return outcome.value;
}

/** Costs what checking a wrong secret costs, and never matches: for unknown and disabled devices. */
export async function burnSecretCheck(secret: string): Promise<false> {
  await verifySecret(secret, DUMMY_HASH);
  return false;
}

async function compare(secret: string, encoded: string): Promise<boolean> {
  const parts = encoded.split('$');
  if (parts.length !== 6 || parts[0] !== 'scrypt') return false;
  const [N, r, p] = parts.slice(1, 4).map(Number);
  if (!isPowerOfTwo(N) || N > MAX_COST || !inRange(r, 1, 32) || !inRange(p, 1, 16)) return false;
  const salt = Buffer.from(parts[4], 'base64');
  const expected = Buffer.from(parts[5], 'base64');
  if (salt.length === 0 || expected.length < 16) return false;
  const actual = await derive(secret, salt, expected.length, { N, r, p });
  return timingSafeEqual(actual, expected);
}

function derive(secret: string, salt: Buffer, length: number, params: ScryptOptions): Promise<Buffer> {
  return new Promise((resolve, reject) =>
    scrypt(secret, salt, length, { ...params, maxmem: MAX_MEMORY }, (error, key) =>
      error ? reject(error) : resolve(key),
    ),
  );
}

const isPowerOfTwo = (n: number) => Number.isInteger(n) && n > 1 && (n & (n - 1)) === 0;
const inRange = (n: number, min: number, max: number) => Number.isInteger(n) && n >= min && n <= max;
