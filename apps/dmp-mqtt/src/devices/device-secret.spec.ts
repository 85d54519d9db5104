import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  burnSecretCheck,
  generateSecret,
  hashSecret,
  limitSecretChecks,
  verifySecret,
} from './device-secret';

describe('device secrets', () => {
  it('stores a salted scrypt hash that verifies the secret and nothing else', async () => {
    const secret = generateSecret();
    const hash = await hashSecret(secret);
    assert.match(hash, /^scrypt\$16384\$8\$1\$[A-Za-z0-9+/=]+\$[A-Za-z0-9+/=]+$/);
    assert.ok(!hash.includes(secret));
    assert.equal(await verifySecret(secret, hash), true);
    assert.equal(await verifySecret(`${secret}x`, hash), false);
    assert.equal(await verifySecret('', hash), false);
  });

  it('salts every hash: the same secret hashes differently each time', async () => {
    const [a, b] = await Promise.all([
      hashSecret('same-secret-0123456789'),
      hashSecret('same-secret-0123456789'),
    ]);
    assert.notEqual(a, b);
    assert.equal(await verifySecret('same-secret-0123456789', b), true);
  });

  it('never matches a malformed or unreasonable stored hash', async () => {
    const good = await hashSecret('s3cret-s3cret-s3cret');
    const [, , , , salt, key] = good.split('$');
    for (const bad of [
      '',
      'plain-text',
      `bcrypt$16384$8$1$${salt}$${key}`,
      `scrypt$1000$8$1$${salt}$${key}`, // N not a power of two
      `scrypt$${2 ** 20}$8$1$${salt}$${key}`, // too costly to attempt
      `scrypt$16384$8$1$$${key}`,
      `scrypt$16384$8$1$${salt}$AAAA`,
    ]) {
      assert.equal(await verifySecret('s3cret-s3cret-s3cret', bad), false, bad);
    }
  });

  it('generates 32-character URL-safe secrets', () => {
    const secrets = new Set(Array.from({ length: 100 }, generateSecret));
    assert.equal(secrets.size, 100);
    for (const s of secrets) assert.match(s, /^[A-Za-z0-9_-]{32}$/);
  });

  it('costs about what a wrong secret costs for an unknown device, and never matches', async () => {
    const hash = await hashSecret('s3cret-s3cret-s3cret');
    const time = async (check: () => Promise<boolean>) => {
      const started = performance.now();
      assert.equal(await check(), false);
      return performance.now() - started;
    };
    const wrong: number[] = [];
    const burnt: number[] = [];
    for (let i = 0; i < 3; i++) {
      wrong.push(await time(() => verifySecret('wrong-wrong-wrong', hash)));
      burnt.push(await time(() => burnSecretCheck('s3cret-s3cret-s3cret')));
    }
    const ratio = Math.min(...wrong) / Math.min(...burnt);
    assert.ok(ratio > 0.5 && ratio < 2, `wrong secret / unknown device = ${ratio.toFixed(2)}`);
  });

  it('refuses a check at once when too many run and wait', async () => {
    const hash = await hashSecret('s3cret-s3cret-s3cret');
    limitSecretChecks(1, 0);
    try {
      const first = verifySecret('s3cret-s3cret-s3cret', hash);
      await assert.rejects(verifySecret('s3cret-s3cret-s3cret', hash), { code: 'DMP_ERR_AUTH_OVERLOADED' });
      assert.equal(await first, true);
    } finally {
      limitSecretChecks(2, 32);
    }
  });
});
