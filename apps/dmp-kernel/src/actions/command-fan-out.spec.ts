import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { commandTargets, firstAcknowledged } from './command-fan-out';

describe('command fan-out over independent brokers', () => {
  it('publishes on the connected brokers only, on none when none is', () => {
    assert.deepEqual(commandTargets([true]), [0]);
    assert.deepEqual(commandTargets([true, false, true]), [0, 2]);
    assert.deepEqual(commandTargets([false, false]), []);
  });

  it('counts as sent on the first PUBACK, even while another broker fails', async () => {
    const never = new Promise<void>(() => undefined);
    assert.equal(
      await firstAcknowledged([
        { broker: 'a:1883', acknowledged: Promise.reject(new Error('connection closed')) },
        { broker: 'b:1883', acknowledged: Promise.resolve() },
        { broker: 'c:1883', acknowledged: never },
      ]),
      'b:1883',
    );
  });

  it('fails only when every broker failed, naming each reason', async () => {
    await assert.rejects(
      firstAcknowledged([
        { broker: 'a:1883', acknowledged: Promise.reject(new Error('no PUBACK within 5000 ms')) },
        { broker: 'b:1883', acknowledged: Promise.reject(new Error('connection closed')) },
      ]),
      { message: 'a:1883: no PUBACK within 5000 ms; b:1883: connection closed' },
    );
  });
});
