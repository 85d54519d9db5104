import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { z } from 'zod';
import { bool, ConfigError, int, list, loadConfig, num } from './env';

const section = z.object({
  COUNT: int(300, 0, 1000),
  RATIO: num(0.5, 0, 1),
  FLAG: bool(true),
  NAMES: list('a,b'),
});
const load = (env: Record<string, string | undefined>) => loadConfig({ s: section }, env).s;
const problems = (env: Record<string, string | undefined>) => {
  try {
    load(env);
  } catch (error) {
    assert.ok(error instanceof ConfigError);
    return error.problems;
  }
  assert.fail('expected a ConfigError');
};

describe('config helpers', () => {
  it('take the default when a variable is unset', () => {
    assert.deepEqual(load({}), { COUNT: 300, RATIO: 0.5, FLAG: true, NAMES: ['a', 'b'] });
  });

  it('read set values', () => {
    assert.deepEqual(load({ COUNT: '0', RATIO: '0.25', FLAG: 'no', NAMES: ' x , y,' }), {
      COUNT: 0,
      RATIO: 0.25,
      FLAG: false,
      NAMES: ['x', 'y'],
    });
    assert.equal(load({ FLAG: 'false' }).FLAG, false);
    assert.equal(load({ FLAG: '1' }).FLAG, true);
  });

  it('refuse an empty or blank number or boolean by name instead of reading it as 0 or false', () => {
    for (const value of ['', ' ', '\t'])
      assert.deepEqual(
        problems({ COUNT: value, RATIO: value, FLAG: value }).map((p) => p.split(':')[0]),
        ['COUNT', 'RATIO', 'FLAG'],
        JSON.stringify(value),
      );
    assert.match(problems({ COUNT: '' })[0], /^COUNT: is empty/);
  });

  it('refuse values out of bounds or of the wrong kind', () => {
    assert.deepEqual(
      problems({ COUNT: '1001', RATIO: '2', FLAG: 'maybe' }).map((p) => p.split(':')[0]),
      ['COUNT', 'RATIO', 'FLAG'],
    );
    assert.match(problems({ COUNT: '1.5' })[0], /^COUNT:/);
    assert.match(problems({ COUNT: 'x' })[0], /^COUNT:/);
  });

  it('keep an empty list empty (a list may be empty on purpose)', () => {
    assert.deepEqual(load({ NAMES: '' }).NAMES, []);
  });
});
