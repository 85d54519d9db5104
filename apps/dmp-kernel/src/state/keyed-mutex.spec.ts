import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { KeyedMutex } from './keyed-mutex';

describe('KeyedMutex', () => {
  it('runs tasks of one key one after the other in call order, other keys alongside, and forgets idle keys', async () => {
    const mutex = new KeyedMutex();
    const log: string[] = [];
    const task = (name: string, ms: number) => async () => {
      log.push(`start ${name}`);
      await sleep(ms);
      log.push(`end ${name}`);
      return name;
    };
    const results = await Promise.all([
      mutex.run('a', task('a1', 20)),
      mutex.run('a', task('a2', 1)),
      mutex.run('b', task('b1', 5)),
    ]);
    assert.deepEqual(results, ['a1', 'a2', 'b1']);
    assert.ok(log.indexOf('end a1') < log.indexOf('start a2'), 'a2 waits for a1');
    assert.ok(log.indexOf('start b1') < log.indexOf('end a1'), 'b1 does not wait for a');
    assert.equal(mutex.size, 0);
  });

  it('releases the key when a task fails', async () => {
    const mutex = new KeyedMutex();
    await assert.rejects(
      mutex.run('k', () => Promise.reject(new Error('boom'))),
      /boom/,
    );
    assert.equal(await mutex.run('k', async () => 'next'), 'next');
  });
});
